"""Mistake review: most confident mistakes, least confident hits, worst classes, pretext mistakes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgwang.data.batch import Batch
from imgwang.evaluate import (
    least_confident_correct,
    plot_pretext_mistakes,
    pretext_mistakes,
    top_mistakes,
    worst_classes,
)
from imgwang.models.encoders import create_encoder
from imgwang.tasks import get_task, task_names
from imgwang.tasks.base import Task

pytestmark = pytest.mark.usefixtures("close_figures")


PROBS = torch.tensor([
    [0.90, 0.05, 0.05],  # true 0: right, confident
    [0.20, 0.70, 0.10],  # true 0: wrong (1) at 0.7
    [0.10, 0.10, 0.80],  # true 1: wrong (2) at 0.8
    [0.40, 0.35, 0.25],  # true 1: wrong (0) at 0.4
    [0.30, 0.60, 0.10],  # true 1: right at 0.6
])
LABELS = torch.tensor([0, 0, 1, 1, 1])


def test_top_mistakes_most_confident_wrong_first():
    mistakes = top_mistakes(PROBS, LABELS)
    assert [m["index"] for m in mistakes] == [2, 1, 3]
    assert mistakes[0] == {"index": 2, "true": 1, "pred": 2, "prob_pred": pytest.approx(0.8), "prob_true": pytest.approx(0.1)}
    assert [m["index"] for m in top_mistakes(PROBS, LABELS, k=2)] == [2, 1]
    with_rows = top_mistakes(PROBS.numpy(), LABELS.numpy(), k=1, indices=torch.tensor([50, 51, 52, 53, 54]))
    assert with_rows[0]["dataset_index"] == 52


def test_least_confident_correct_and_worst_classes():
    assert [m["index"] for m in least_confident_correct(PROBS, LABELS, k=5)] == [4, 0]
    per_class = {"beagle": 0.9, "dingo": 0.4, "samoyed": 0.75, "tench": 0.4}
    assert worst_classes(per_class, n=3) == [("dingo", 0.4), ("tench", 0.4), ("samoyed", 0.75)]
    assert worst_classes(per_class, n=1) == [("dingo", 0.4), ("tench", 0.4)]  # a tie at the cut is shown whole


# --- pretext mistakes with a tiny task that follows the contract ----------------------------------------

class BrightnessTask(Task):
    """Input: (image, a partner image from the same batch). Target 0; the model predicts mean brightness,
    so the per-example squared-error loss is the image's brightness squared: known in advance."""

    name = "brightness"
    metric_name = "accuracy"
    chance = 0.5

    def make_batch(self, images, generator):
        b = images.shape[0]
        partner = torch.randperm(b, generator=generator, device=generator.device).to(images.device)
        sources = torch.stack([torch.arange(b, device=images.device), partner], dim=1)
        sources[::2, 1] = -1  # even positions use no partner: -1 must be dropped from the sources
        return (images, images[partner]), torch.zeros(b, 1, device=images.device), {"sources": sources}

    def build_model(self, encoder):
        return BrightnessModel()

    def loss(self, outputs, targets):
        return F.mse_loss(outputs, targets)

    def metric(self, outputs, targets):
        return ((outputs - targets).abs() < 0.25).float().mean()


class BrightnessModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Identity()
        self.drop = nn.Dropout(0.9)  # would scramble the outputs if eval mode were not used

    def forward(self, inputs):
        image, _partner = inputs
        return self.drop(image.mean(dim=(1, 2, 3))).unsqueeze(1)


def brightness_dataset(n=10, bs=4):
    """Image with dataset row r has constant brightness levels[r]; batches list the rows in shuffled order."""
    levels = torch.linspace(0.05, 0.95, n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    images = levels.view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    loader = [Batch(images[order[i:i + bs]], torch.full((len(order[i:i + bs]),), -1), order[i:i + bs])
              for i in range(0, n, bs)]
    return loader, images, levels


def test_pretext_mistakes_keeps_the_highest_loss_examples_and_their_sources():
    loader, images, levels = brightness_dataset()
    model = BrightnessModel().train()
    mistakes = pretext_mistakes(BrightnessTask(), model, loader, "cpu", k=3, seed=0)
    assert model.training  # the caller's mode comes back

    brightest = torch.argsort(levels, descending=True)[:3].tolist()
    assert [m["sources"][0] for m in mistakes] == brightest
    for m in mistakes:
        row = m["sources"][0]
        assert m["loss"] == pytest.approx(levels[row].item() ** 2, abs=1e-5)  # leave-one-out = own term
        assert m["metric"] == float(levels[row].item() < 0.25)
        assert m["target"] == [0.0] and m["output"] == [pytest.approx(levels[row].item(), abs=1e-4)]
        # the input shown is the image the model got, i.e. the source image itself
        (shown,) = m["inputs"]
        assert shown.dtype == np.uint8 and shown.shape == (3, 4, 4)
        assert np.array_equal(shown, (images[row] * 255).round().to(torch.uint8).numpy())
        # the partner, when used, is a dataset row from the same loader batch; -1 slots are dropped
        batch_rows = loader[m["batch"]].indices.tolist()
        assert m["sources"][0] == batch_rows[m["position"]]
        assert len(m["sources"]) == (1 if m["position"] % 2 == 0 else 2)
        assert all(s in batch_rows for s in m["sources"])

    again = pretext_mistakes(BrightnessTask(), model, loader, "cpu", k=3, seed=0)
    assert [m["sources"] for m in again] == [m["sources"] for m in mistakes]


def test_pretext_mistakes_uses_a_per_example_loss_when_the_task_has_one():
    class DarknessTask(BrightnessTask):
        def per_example_loss(self, outputs, targets):
            return 1.0 - outputs.squeeze(1)  # darkest first

    loader, _, levels = brightness_dataset()
    mistakes = pretext_mistakes(DarknessTask(), BrightnessModel(), loader, "cpu", k=2)
    assert [m["sources"][0] for m in mistakes] == torch.argsort(levels)[:2].tolist()


def test_pretext_mistakes_ranks_examples_of_a_batch_coupled_loss():
    """A loss that only exists across the batch (like contrastive ones): alone, every example scores 0.

    The spread of the predicted brightness around the batch mean: the outlier adds most to it."""

    class SpreadTask(BrightnessTask):
        def loss(self, outputs, targets):
            return ((outputs - outputs.mean()) ** 2).mean()

    levels = torch.tensor([0.5, 0.52, 0.95, 0.48, 0.5, 0.1, 0.49, 0.51])  # outliers: row 2, then row 5
    images = levels.view(-1, 1, 1, 1).expand(8, 3, 4, 4).contiguous()
    loader = [Batch(images[:4], torch.full((4,), -1), torch.arange(4)),
              Batch(images[4:], torch.full((4,), -1), torch.arange(4, 8))]
    mistakes = pretext_mistakes(SpreadTask(), BrightnessModel(), loader, "cpu", k=2)
    assert [m["sources"][0] for m in mistakes] == [2, 5]
    assert mistakes[0]["loss"] > mistakes[1]["loss"] > 0


def test_plot_pretext_mistakes_shows_each_input_beside_its_sources():
    loader, images, _ = brightness_dataset()
    mistakes = pretext_mistakes(BrightnessTask(), BrightnessModel(), loader, "cpu", k=4)
    fig = plot_pretext_mistakes(mistakes, lambda row: (images[row] * 255).to(torch.uint8).numpy())
    assert len(fig.axes) == sum(len(m["inputs"]) + len(m["sources"]) for m in mistakes)
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[1].get_title() == f"source {mistakes[0]['sources'][0]}"
    first = fig.axes[0].get_title()  # the label and the model's answer beside the loss: what went wrong
    assert first.startswith(f"input  loss {mistakes[0]['loss']:.3g}") and "target" in first and "output" in first


@pytest.mark.parametrize("name", task_names())
def test_pretext_mistakes_works_with_every_registered_task(name):
    """The review must read whatever a real task returns (tuples of inputs, lists of views, coupled losses)."""
    torch.manual_seed(0)
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = torch.arange(100, 116)
    loader = [Batch(images[i:i + 8], torch.full((8,), -1), rows[i:i + 8]) for i in (0, 8)]
    task = get_task(name)
    mistakes = pretext_mistakes(task, task.build_model(create_encoder("tinyconv")), loader, "cpu", k=3)
    losses = [m["loss"] for m in mistakes]
    assert len(mistakes) == 3 and losses == sorted(losses, reverse=True) and all(np.isfinite(losses))
    for m in mistakes:
        assert m["sources"] and all(100 <= s < 116 for s in m["sources"])
        assert m["inputs"] and all(im.dtype == np.uint8 and im.shape[0] == 3 for im in m["inputs"])


def test_review_stage_shows_pretext_mistakes_at_the_pretrain_size(lab_env, tmp_path):
    """The pretext model is judged on images of the size it was trained at, not the transfer size."""
    from imgwang.stages.pretrain import build_pretext
    from imgwang.stages.resolve import resolve
    from imgwang.stages.review import run_review
    from imgwang.stages.stage_data import load_stage_data

    common = dict(data="sample", arch="tinyconv", device="cpu", seed=0)
    pretrain_cfg = resolve("pretrain", dict(common, task="rotation", size=24, bs=16))
    review_cfg = resolve("review", dict(common, size=40, bs=16, n_show=4))
    _, model = build_pretext(pretrain_cfg)
    torch.save(model.state_dict(), tmp_path / "pretext_model.pt")
    sd = load_stage_data("sample", 40, progress=False)
    n = len(sd.val_rows)
    probs = torch.softmax(torch.randn(n, 20, generator=torch.Generator().manual_seed(0)), 1)
    torch.save({"probs": probs, "labels": torch.from_numpy(sd.val_labels), "rows": torch.from_numpy(sd.val_rows),
                "class_names": [f"c{i}" for i in range(20)]}, tmp_path / "predictions.pt")
    untrained_classifier(tmp_path)  # what Grad-CAM looks through

    result = run_review(review_cfg, tmp_path, pretrain_cfg)
    pretext = result["pretext"]
    assert pretext["data"].size == 24 and result["data"].size == 40
    assert len(pretext["mistakes"]) == 4
    assert all(x.shape[-2:] == (24, 24) for m in pretext["mistakes"] for x in m["inputs"])
    assert all(m["row"] in set(sd.val_rows.tolist()) for m in result["mistakes"])
    assert result["split"] == "val"  # a predictions file without its split: val, the only one before SPLIT


def untrained_classifier(run_dir, n_classes: int = 20) -> None:
    """The classifier.pt a transfer leaves (review's Grad-CAM looks through it), untrained."""
    from imgwang.stages.transfer import build_classifier

    torch.save(build_classifier("tinyconv", n_classes, None).state_dict(), run_dir / "classifier.pt")


def test_review_names_the_split_evaluate_scored(lab_env, tmp_path):
    """Under SPLIT=dev the review's mistakes are dev images: it says so, from what evaluate saved."""
    from imgwang.stages.evaluate import save_predictions
    from imgwang.stages.resolve import resolve
    from imgwang.stages.review import load_predictions, run_review
    from imgwang.stages.stage_data import load_stage_data

    sd = load_stage_data("sample", 24, progress=False)
    _, _, rows, labels = sd.labelled("dev")
    probs = torch.softmax(torch.randn(len(rows), 20, generator=torch.Generator().manual_seed(0)), 1)
    save_predictions(tmp_path, sd, probs, torch.as_tensor(labels), torch.as_tensor(rows), [f"c{i}" for i in range(20)], "dev")
    assert load_predictions(tmp_path)["split"] == "dev"
    untrained_classifier(tmp_path)
    cfg = resolve("review", dict(data="sample", arch="tinyconv", device="cpu", seed=0, size=24, bs=16, n_show=4))
    assert run_review(cfg, tmp_path)["split"] == "dev"


def test_task_examples_put_the_views_of_one_image_side_by_side():
    """simclr's examples are pairs of views of the same image (its target, a batch position, says nothing)."""
    from imgwang.stages.show import task_examples

    imgs = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    task = get_task("simclr")
    views, targets, _ = task.make_batch(imgs, torch.Generator().manual_seed(1))
    images, titles, ncols = task_examples(views, targets, n=12)
    assert len(images) == 12 and ncols == 6 and titles[:3] == ["image 1, view 1", "image 1, view 2", "image 2, view 1"]
    assert torch.equal(images[0], views[0][0]) and torch.equal(images[1], views[1][0]) and torch.equal(images[2], views[0][1])
    single, titles, ncols = task_examples(imgs, torch.arange(8) % 4, n=12)
    assert len(single) == 8 and titles[5] == "target 1" and ncols == 6
