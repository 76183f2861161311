"""SwAV's and DINO's heads over every crop at once, their scores in float32 under autocast, DINO's saved
teacher and its CNN/ViT settings, SwAV sized to the run, chance from the configured batch, and the
collapse monitor (issue 22)."""

import math

import pytest
import torch
from torch import nn

from conftest import gen, smooth_images
from imgwang.models.checkpoint import kept_encoder
from imgwang.models.encoders import create_encoder
from imgwang.tasks import get_task
from imgwang.train.collapse import collapse_scraps, collapse_warning, embedding_std

SMALL = {"swav": dict(n_prototypes=12, proj_dim=8, n_small_crops=2, hidden_dim=32),
         "dino": dict(out_dim=32, n_local_crops=2)}


def batch_norm_rows(module: nn.Module) -> list[int]:
    """Rows each call of the module's first BatchNorm1d saw."""
    bn = next(m for m in module.modules() if isinstance(m, nn.BatchNorm1d))
    rows = []
    bn.register_forward_hook(lambda m, inputs, out: rows.append(inputs[0].shape[0]))
    return rows


@pytest.mark.parametrize("name, head", [("swav", "projector"), ("dino", "head")])
def test_the_head_runs_once_over_every_crop(name, head):
    task = get_task(name, **SMALL[name])
    model = task.build_model(create_encoder("tinyconv"))
    views = task.make_batch(smooth_images(4, size=32), gen())[0]
    assert len({v.shape[-1] for v in views}) == 2  # two resolutions: large and small crops
    rows = batch_norm_rows(getattr(model, head))
    model.train()(views)
    assert rows == [4 * len(views)]  # one call: its BatchNorm's statistics cover large and small crops together


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_scores_are_float32_under_bf16_autocast(name):
    task = get_task(name, **SMALL[name])
    model = task.build_model(create_encoder("tinyconv")).train()
    views = task.make_batch(smooth_images(4, size=32), gen())[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(views)
        loss = task.loss(outputs, None)
    logits = outputs[1]  # swav: prototype scores of every view; dino: the student's last layer on every view
    assert all(t.dtype == torch.float32 for t in logits)
    if name == "dino":
        assert all(t.dtype == torch.float32 for t in outputs[0])  # the teacher's too
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_dino_saves_and_monitors_its_teacher():
    task = get_task("dino", **SMALL["dino"])
    model = task.build_model(create_encoder("tinyconv"))
    with torch.no_grad():
        next(model.teacher_encoder.parameters()).add_(1.0)  # teacher and student now differ
    kept = kept_encoder(model)
    assert kept is model.teacher_encoder
    assert torch.equal(next(kept.parameters()), next(model.teacher_encoder.parameters()))
    assert not torch.equal(next(kept.parameters()), next(model.encoder.parameters()))
    simclr = get_task("simclr").build_model(create_encoder("tinyconv"))
    assert kept_encoder(simclr) is simclr.encoder  # a method without a teacher keeps its encoder


def test_dino_takes_the_resnet_settings_on_a_cnn_and_the_vit_settings_on_a_vit():
    task = get_task("dino", **SMALL["dino"])
    task.build_model(create_encoder("tinyconv"))
    assert (task.min_scale, task.local_scale, task.teacher_temp, task.grad_clip) == (0.14, (0.05, 0.14), 0.04, 3.0)
    assert task.teacher_temp_at(0, 10) == task.teacher_temp_at(9, 10) == 0.04
    vit = create_encoder("tinyconv")
    vit.body.patch_embed = nn.Identity()  # what makes a timm model a ViT here
    model = task.build_model(vit)
    assert (task.min_scale, task.local_scale, task.teacher_temp) == (0.4, (0.05, 0.4), 0.07)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.head.modules())  # DINO's ViT head: no BN
    given = get_task("dino", min_scale=0.3, teacher_temp=0.05, **SMALL["dino"])
    given.build_model(create_encoder("tinyconv"))
    assert (given.min_scale, given.teacher_temp) == (0.3, 0.05)  # a value given wins
    given_bn = get_task("dino", use_bn_in_head=False, **SMALL["dino"]).build_model(create_encoder("tinyconv"))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in given_bn.head.modules())  # DINO's --use_bn_in_head


def test_dino_without_norm_last_layer_trains_the_norm_of_its_last_layer_except_while_frozen():
    """DINO's --norm_last_layer false: the last layer's weight_g (each output's norm) learns too, and the first
    epoch's freeze holds it as it holds weight_v."""
    task = get_task("dino", norm_last_layer=False, **SMALL["dino"])
    model = task.build_model(create_encoder("tinyconv"))
    assert model.head.last_layer.weight_g.requires_grad
    assert not get_task("dino", **SMALL["dino"]).build_model(create_encoder("tinyconv")).head.last_layer.weight_g.requires_grad
    views, targets, _ = task.make_batch(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                                        torch.Generator().manual_seed(1))
    for epoch, frozen in ((0, True), (1, False)):
        task.on_epoch_start(model, epoch, 10)
        model.zero_grad()
        task.loss(model(views), targets).backward()
        moved = model.head.last_layer.weight_g.grad.abs().sum() > 0
        assert moved is not frozen and (model.head.last_layer.weight_v.grad.abs().sum() > 0) is not frozen


@pytest.mark.parametrize("bs, prototypes", [(64, 1024), (128, 2048), (256, 3000), (4096, 3000)])
def test_swav_sizes_its_prototypes_to_the_batch_and_starts_a_queue_a_fraction_into_the_run(bs, prototypes):
    task = get_task("swav")
    task.fit_to_run(batch_size=bs, epochs=30)
    assert (task.queue_size, task.n_prototypes) == (0, prototypes)
    assert task.queue_start_epoch(30) == 3 and task.queue_start_epoch(200) == 20
    given = get_task("swav", n_prototypes=3000, queue_size=3840)
    given.fit_to_run(batch_size=bs, epochs=30)
    assert (given.queue_size, given.n_prototypes) == (3840, 3000)


def test_chance_follows_the_configured_batch_not_a_short_last_one():
    task = get_task("simclr")
    task.make_batch(smooth_images(8, size=16), gen())
    task.make_batch(smooth_images(3, size=16), gen())  # the loader's last, short batch
    assert task.chance == pytest.approx(1 / 15)


def test_the_val_metrics_chance_is_its_own_batches_rows_weighted():
    """Pair accuracy on a val set smaller than one batch picks among fewer views: its chance is higher than the
    training batch's. Over batches it is weighted by rows, as the loop averages the metric."""
    task = get_task("simclr")
    assert task.chance_over([20]) == pytest.approx(1 / 39)
    assert task.chance_over([64, 64, 44]) == pytest.approx((128 / 127 + 44 / 87) / 172)
    assert get_task("rotation").chance_over([3]) == 0.25  # a chance that does not follow the batch


def test_embedding_std_is_about_one_over_root_d_when_spread_and_zero_when_collapsed():
    spread = embedding_std(torch.randn(4096, 64, generator=gen()))
    assert spread.item() == pytest.approx(1 / math.sqrt(64), rel=0.02)
    collapsed = embedding_std(torch.ones(32, 64) + 1e-4 * torch.randn(32, 64, generator=gen()))
    assert collapsed.item() < 1e-3
    row = {"epoch": 3, "embedding_std": collapsed.item(), "embedding_dim": 64}
    assert "below the collapse floor 0.0250" in collapse_warning(row)
    assert collapse_warning({**row, "embedding_std": spread.item()}) is None
    assert collapse_scraps([{"epoch": 1}]) == {}
    assert collapse_scraps([row]) == {"embedding_std": row["embedding_std"], "embedding_std_floor": 0.025}


@pytest.mark.parametrize("name", ["simclr", "swav", "dino", "byol"])
def test_every_embedding_method_gives_embeddings_to_watch(name):
    task = get_task(name, **SMALL.get(name, {}))
    model = task.build_model(create_encoder("tinyconv")).train()
    outputs = model(task.make_batch(smooth_images(4, size=32), gen())[0])
    z = task.embeddings(outputs)
    assert z.shape[0] == 4 and z.dim() == 2 and 0 < embedding_std(z).item() < 1


def test_swav_can_pool_as_the_leaderboard_entry():
    """fastai's average + max pooling: the head sees twice the encoder's width (1,024 for a 512-wide resnet34)."""
    task = get_task("swav", pool="catavgmax", **SMALL["swav"])
    encoder = create_encoder("tinyconv")
    model = task.build_model(encoder)
    assert model.projector.layers[0].in_features == 2 * encoder.num_features
    projections, scores, _ = model(task.make_batch(smooth_images(4, size=32), gen())[0])
    assert len(scores) == 4 and scores[0].shape == (4, 12)
