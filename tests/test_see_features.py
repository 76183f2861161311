"""What an encoder learned, in pictures: nearest neighbours, the t-SNE map, Grad-CAM (small, fast checks; the
executed notebooks' figures are checked in test_notebooks.py)."""

import numpy as np
import pytest
import torch

from conftest import gen
from imgwang.evaluate.embedding import feature_maps, plot_feature_maps, subsample
from imgwang.evaluate.gradcam import grad_cam, plot_cams
from imgwang.evaluate.neighbours import neighbour_table, pick_queries, plot_neighbours
from imgwang.models.classifier import Classifier
from imgwang.models.encoders import create_encoder

pytestmark = pytest.mark.usefixtures("close_figures")


def clusters(n: int, classes: int = 5, dim: int = 16, seed: int = 0):
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=gen(100)) * 4  # the same classes whatever the seed
    return centres[labels] + torch.randn(n, dim, generator=gen(seed)), labels


def test_queries_are_fixed_one_per_class_and_neighbours_follow_the_clusters():
    vf, vl = clusters(50)
    tf, tl = clusters(100, seed=2)
    q = pick_queries(vl, n=5, seed=3)
    assert sorted(vl[q].tolist()) == [0, 1, 2, 3, 4] and torch.equal(q, pick_queries(vl, n=5, seed=3))
    rows = torch.arange(100) + 1000
    spaces = {"good": (tf, tl, rows, vf, vl, torch.arange(50)),
              "noise": (torch.randn(100, 16, generator=gen(9)), tl, rows, torch.randn(50, 16, generator=gen(8)), vl,
                        torch.arange(50))}
    table = neighbour_table(spaces, q, k=3)
    assert table["query_rows"] == q.tolist()
    good, noise = table["spaces"]["good"], table["spaces"]["noise"]
    assert all(lab == want for labs, want in zip(good["labels"], table["query_labels"]) for lab in labs)
    assert all(1000 <= r < 1100 for rs in good["rows"] for r in rs)  # cache rows, for showing the images
    assert sum(lab == want for labs, want in zip(noise["labels"], table["query_labels"]) for lab in labs) < 15
    fig = plot_neighbours(table, lambda row: torch.rand(3, 8, 8), [f"c{i}" for i in range(5)])
    assert len(fig.axes) == 5 * (1 + 2 * 3)  # a query, then 3 neighbours in each of 2 spaces, per row


def test_tsne_map_keeps_clusters_apart_and_draws_one_panel_per_space():
    vf, vl = clusters(60, classes=3)
    maps = feature_maps({"pretrained": vf, "random": torch.randn(60, 16, generator=gen(4))}, vl, seed=0)
    xy = torch.tensor(maps["maps"]["pretrained"])
    labels = torch.tensor(maps["labels"])
    centres = torch.stack([xy[labels == c].mean(0) for c in range(3)])
    spread = max(float((xy[labels == c] - centres[c]).norm(dim=1).mean()) for c in range(3))
    assert float(torch.cdist(centres, centres).fill_diagonal_(1e9).min()) > 2 * spread  # islands, not a mix
    assert len(plot_feature_maps(maps, ["a", "b", "c"]).axes) == 2
    assert plot_feature_maps(maps, ["a", "b", "c"]).axes[-1].get_legend() is not None
    many = {"maps": {"pretrained": np.random.default_rng(0).normal(size=(60, 2))}, "labels": np.arange(60) % 30}
    wide = plot_feature_maps(many, [f"class {i}" for i in range(30)])
    assert wide.axes[-1].get_legend() is None and "30 classes" in wide._suptitle.get_text()  # beyond tab20's colours
    kept = subsample(torch.arange(1000) % 4, n=100, seed=0)
    assert len(kept) == 100 and all((torch.arange(1000)[kept] % 4 == c).sum() == 25 for c in range(4))


def test_grad_cam_over_average_pooling_and_a_linear_head_is_the_class_activation_map():
    """Selvaraju et al. (sec. 3.1): with global average pooling and a linear layer, Grad-CAM equals CAM (Zhou et
    al. 2016), relu(sum_k W[c, k] A_k), up to scale."""
    torch.manual_seed(0)
    model = Classifier(create_encoder("tinyconv"), n_classes=3)
    linear = torch.nn.Linear(model.encoder.num_features, 3)
    model.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), linear)
    model.train()
    images, classes = torch.rand(4, 3, 64, 64, generator=gen(1)), torch.tensor([0, 1, 2, 1])
    cam = grad_cam(model, images, classes)
    assert model.training and all(p.grad is None for p in model.parameters())  # state restored, no gradients left
    with torch.no_grad():
        model.eval()
        maps = model.encoder.forward_features(images)
        want = torch.relu(torch.einsum("bk,bkhw->bhw", linear.weight[classes], maps))[:, None]
        want = torch.nn.functional.interpolate(want, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
        want = want / want.flatten(1).amax(1).view(-1, 1, 1)
    assert cam.shape == (4, 64, 64) and float(cam.min()) >= 0 and float(cam.amax(dim=(1, 2)).min()) == pytest.approx(1)
    assert torch.allclose(cam, want, atol=1e-5)
    items = [{"true": 0, "pred": 1, "prob_pred": 0.9, "image": images[i], "cam_pred": cam[i], "cam_true": cam[i]}
             for i in range(3)]
    assert len(plot_cams(items, ["a", "b"], "mistakes").axes) == 3 * 3  # image, map for pred, map for true


def test_a_vit_grad_cam_lays_its_patch_tokens_on_their_grid_without_the_class_token():
    """A ViT's maps are tokens (B, C, 1 + 4 x 4, 1) at 64 px: the map is drawn on the 4 x 4 patch grid (a patch's
    evidence lands on that patch), not as a stretched column with the class token in it."""
    torch.manual_seed(0)
    model = Classifier(create_encoder("vit_tiny_patch16_224", 64), n_classes=3)
    linear = torch.nn.Linear(model.encoder.num_features, 3)
    model.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), linear)
    images, classes = torch.rand(2, 3, 64, 64, generator=gen(1)), torch.tensor([0, 2])
    assert model.encoder.token_grid(64, 64) == (4, 4) and model.encoder.token_grid(60, 28) == (4, 2)
    cam = grad_cam(model, images, classes)
    with torch.no_grad():
        model.eval()
        tokens = model.encoder.forward_features(images)[:, :, 1:, 0].unflatten(2, (4, 4))  # patch tokens, row-major
        want = torch.relu(torch.einsum("bk,bkhw->bhw", linear.weight[classes], tokens))[:, None]
        want = torch.nn.functional.interpolate(want, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
        want = want / want.flatten(1).amax(1).view(-1, 1, 1)
    assert torch.allclose(cam, want, atol=1e-5)


def test_a_scoring_set_too_small_for_t_sne_gets_a_line_not_an_error():
    few = feature_maps({"pretrained": torch.randn(2, 8, generator=gen(1))}, [0, 1])
    assert few == {"labels": [0, 1], "maps": {}}
    (ax,) = plot_feature_maps(few, ["a", "b"]).axes
    assert [t.get_text() for t in ax.texts] == ["2 scoring images: too few for a map"]


def test_an_empty_grid_is_one_line_of_text_not_a_black_image():
    """No mistakes (or no correct prediction) to show: a line of text, not an empty 8 x 8 black picture."""
    from types import SimpleNamespace

    from imgwang.stages.show import mistakes_grid

    for fig in (plot_cams([], ["a"], "most confident mistakes"),
                mistakes_grid([], {"data": SimpleNamespace(cache=None), "class_names": ["a"]})):
        (ax,) = fig.axes
        assert not ax.images and [t.get_text() for t in ax.texts] == ["nothing to show"]


def test_grad_cam_names_its_feature_grid_and_refuses_a_one_by_one_map():
    """tinyconv halves the side four times: 64 px -> a 4 x 4 map, named in the figure's title; 16 px -> 1 x 1,
    one weight for the whole image, so the figure is one line saying why instead of flat maps."""
    from imgwang.evaluate.gradcam import grad_cam_on_grid

    torch.manual_seed(0)
    model = Classifier(create_encoder("tinyconv"), n_classes=2)
    items = []
    for side, want in ((64, (4, 4)), (16, (1, 1))):
        images = torch.rand(2, 3, side, side, generator=gen(side))
        cam, grid = grad_cam_on_grid(model, images, [0, 1])
        assert grid == want and cam.shape == (2, side, side)
        items.append([{"true": 0, "pred": 1, "prob_pred": 0.6, "image": images[i], "cam_pred": cam[i],
                       "cam_true": cam[i], "grid": grid} for i in range(2)])
    assert "over the encoder's 4 x 4 feature map" in plot_cams(items[0], ["a", "b"], "mistakes")._suptitle.get_text()
    (ax,) = plot_cams(items[1], ["a", "b"], "mistakes").axes
    assert not ax.images and "1 x 1" in ax.texts[0].get_text()
