"""simclr, swav, dino, byol: the views, the pair-accuracy metric and its chance level, the losses, SwAV's prototypes."""

import pytest
import torch

from conftest import gen, smooth_images
from imgwang.core.errors import ConfigError
from imgwang.models.encoders import create_encoder
from imgwang.tasks import get_task
from imgwang.tasks.simclr import pair_accuracy

VIEW_TASKS = ["simclr", "swav", "dino", "byol"]


@pytest.mark.parametrize("name", VIEW_TASKS)
def test_views_are_two_different_augmentations_of_each_image(name):
    images = smooth_images(8)
    (v0, v1, *_), targets, meta = get_task(name).make_batch(images, gen(1))
    for v in (v0, v1):
        assert v.shape == images.shape and v.min() >= 0 and v.max() <= 1
        assert (v - images).abs().flatten(1).amax(1).min() > 0.01  # every view differs from its image
    assert (v0 - v1).abs().flatten(1).amax(1).min() > 0.01  # and the two views from each other
    assert torch.equal(targets, torch.arange(8)) and torch.equal(meta["sources"], torch.arange(8)[:, None])


def test_views_are_drawn_per_sample_not_per_batch():
    same = smooth_images(1).expand(8, -1, -1, -1).contiguous()  # one image, eight times
    (v0, _), _, _ = get_task("simclr").make_batch(same, gen(2))
    distinct = {tuple(v.flatten()[:64].tolist()) for v in v0}
    assert len(distinct) == 8


def test_views_keep_the_content_of_their_own_image():
    """Flat-coloured images: with no colour jitter every view is its own image's colour, or that colour's grey."""
    colours = torch.rand(8, 3, generator=gen(3)) * 0.6 + 0.2
    images = colours[:, :, None, None].expand(8, 3, 16, 16).contiguous()
    grey = (colours * torch.tensor([0.299, 0.587, 0.114])).sum(1, keepdim=True).expand(8, 3)
    (v0, v1), _, _ = get_task("simclr", jitter=0.0, blur_p=0.0).make_batch(images, gen(4))
    for v in (v0, v1):
        shown = v.mean(dim=(2, 3))
        assert torch.allclose(v, shown[:, :, None, None].expand_as(v), atol=1e-4)  # still flat
        own = (shown - colours).abs().amax(1) < 1e-3
        greyed = (shown - grey).abs().amax(1) < 1e-3
        assert torch.all(own | greyed)
    assert int((v0 - images).abs().flatten(1).amax(1).lt(1e-3).sum()) >= 4  # grayscale is the exception (p 0.2)


def test_views_are_deterministic_and_leave_the_global_rng_alone():
    images = smooth_images(6)
    task = get_task("simclr")
    torch.manual_seed(123)
    a = task.make_batch(images, gen(5))[0]
    after_a = torch.rand(3)
    torch.manual_seed(123)
    b = task.make_batch(images, gen(5))[0]
    after_b = torch.rand(3)
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(after_a, expected_after) and torch.equal(after_b, expected_after)
    c = task.make_batch(images, gen(6))[0]
    assert not torch.equal(a[0], c[0])


def test_pair_accuracy_finds_partners_and_its_chance_level():
    z0 = torch.randn(16, 8, generator=gen(7))
    assert float(pair_accuracy(z0, z0 + 0.01 * torch.randn(16, 8, generator=gen(8)))) == 1.0
    shifted = z0.roll(1, dims=0)  # every view's look-alike is someone else's partner
    assert float(pair_accuracy(z0, shifted)) == 0.0
    # unrelated projections: about 1 / (2B - 1) over many draws
    scores = [float(pair_accuracy(torch.randn(16, 8, generator=gen(s)), torch.randn(16, 8, generator=gen(100 + s)))) for s in range(200)]
    assert sum(scores) / len(scores) == pytest.approx(1 / 31, abs=0.01)


@pytest.mark.parametrize("name", VIEW_TASKS)
def test_chance_follows_the_batch_size(name):
    task = get_task(name)
    per_view = name == "byol"  # byol retrieves each prediction's target among B, the others a partner among 2B - 1
    task.make_batch(smooth_images(5), gen())
    assert task.chance == pytest.approx(1 / 5 if per_view else 1 / 9)
    task.make_batch(smooth_images(12), gen())
    assert task.chance == pytest.approx(1 / 12 if per_view else 1 / 23)
    assert task.metric_name == "pair_accuracy"


def test_simclr_loss_is_lower_for_matching_pairs():
    task = get_task("simclr")
    z0 = torch.randn(16, 32, generator=gen(9))
    matched = task.loss((z0, z0 + 0.05 * torch.randn(16, 32, generator=gen(10))), None)
    shuffled = task.loss((z0, z0[torch.randperm(16, generator=gen(11))]), None)
    assert float(matched) < float(shuffled) - 1


def test_simclr_model_projects_each_view():
    task = get_task("simclr", proj_dim=16)
    model = task.build_model(create_encoder("tinyconv"))
    views, targets, _ = task.make_batch(smooth_images(4), gen())
    z0, z1 = model(views)
    assert z0.shape == z1.shape == (4, 16)
    assert model.encoder.arch == "tinyconv"
    assert torch.isfinite(task.loss((z0, z1), targets))


def test_swav_normalises_prototypes_in_training_forwards_only():
    task = get_task("swav", n_prototypes=10, proj_dim=8)
    model = task.build_model(create_encoder("tinyconv"))
    weight = model.prototypes.weight
    with torch.no_grad():
        weight.mul_(3.0)
    views, _, _ = task.make_batch(smooth_images(4), gen())
    norms_before = weight.norm(dim=1).clone()
    model.eval()
    with torch.no_grad():
        model(views)
    assert torch.equal(weight.norm(dim=1), norms_before)  # eval leaves them alone
    assert not torch.allclose(norms_before, torch.ones(10))
    model.train()
    projections, scores, queued = model(views)
    assert queued == ()  # no queue unless asked for
    assert torch.allclose(weight.norm(dim=1), torch.ones(10), atol=1e-5)  # train renormalised them
    assert all(torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5) for z in projections)
    assert [s.shape for s in scores] == [(4, 10)] * 8  # 2 large + 6 small views


def test_swav_small_crops_are_extra_low_resolution_views_that_enter_the_loss():
    images = smooth_images(6)
    task = get_task("swav", n_small_crops=2, n_prototypes=12, proj_dim=8)
    views, targets, _ = task.make_batch(images, gen(12))
    assert [tuple(v.shape[-2:]) for v in views] == [(32, 32), (32, 32), (24, 24), (24, 24)]  # 0.75 x the side
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    outputs = model(views)
    assert len(outputs[0]) == 4 and len(outputs[1]) == 4
    with torch.no_grad():
        with_small = task.loss(outputs, targets)
        without_small = task.loss((outputs[0][:2], outputs[1][:2]), targets)
    assert torch.isfinite(with_small) and float(with_small) != pytest.approx(float(without_small))


def test_swav_queue_is_a_fifo_of_earlier_full_view_projections_used_once_full():
    """queue_size 8 with batches of 4: two training forwards fill it (no queue scores yet); from the third
    on, the loss sees the prototype scores of the two batches before, newest first."""
    task = get_task("swav", n_prototypes=6, proj_dim=8, queue_size=8, n_small_crops=0)
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    batches = [task.make_batch(smooth_images(4, seed=s), gen(s))[0] for s in range(3)]
    outs = [model(views) for views in batches]
    assert outs[0][2] == () and outs[1][2] == ()  # still filling
    queued = outs[2][2]
    assert len(queued) == 2 and queued[0].shape == (8, 6)
    for i in range(2):  # view i's queue: batch 1's projections, then batch 0's (before batch 2 was pushed)
        expect = torch.cat([outs[1][0][i], outs[0][0][i]]).detach()
        assert torch.allclose(queued[i], model.prototypes(expect).detach(), atol=1e-5)
        assert torch.allclose(model.queue[i], torch.cat([outs[2][0][i], outs[1][0][i]]).detach(), atol=1e-6)
    with torch.no_grad():
        with_queue = task.loss(outs[2], torch.arange(4))
        without = task.loss(outs[2][:2], torch.arange(4))
    assert torch.isfinite(with_queue) and float(with_queue) != pytest.approx(float(without))  # the codes changed
    model.eval()
    with torch.no_grad():
        assert model(batches[0])[2] == ()  # validation neither reads nor fills the queue
    assert torch.allclose(model.queue[0], torch.cat([outs[2][0][0], outs[1][0][0]]).detach(), atol=1e-6)


def test_swav_queue_survives_a_checkpoint_round_trip():
    task = get_task("swav", n_prototypes=6, proj_dim=8, queue_size=8)
    model = task.build_model(create_encoder("tinyconv"))
    for s in range(2):
        model(task.make_batch(smooth_images(4, seed=s), gen(s))[0])
    fresh = task.build_model(create_encoder("tinyconv"))
    assert fresh._filled == 0
    fresh.load_state_dict(model.state_dict())
    assert fresh._filled == 8 and torch.equal(fresh.queue, model.queue)
    views = task.make_batch(smooth_images(4, seed=5), gen(5))[0]
    assert len(fresh(views)[2]) == 2  # a resumed run uses its full queue at once


@pytest.mark.parametrize("params, steps, floor", [
    # 2 large + 6 small crops learn slowly on one batch (the small crops pull too): 0.20-0.50 after 150 steps
    # in runs that differed only in how the first step's prototypes were frozen; chance is 1/63
    (dict(), 150, 0.12),
    (dict(queue_size=64, queue_start=0.0, n_small_crops=0), 100, 0.5),  # 1.0 after 100 steps
])
def test_swav_overfits_one_batch(params, steps, floor):
    """As every pair task in test_tasks_common (SwAV's loss has a floor well above 0): the partners found,
    far above chance (1/63)."""
    from conftest import one_torch_thread
    from imgwang.train.sanity import overfit_one_batch

    with one_torch_thread():
        result = overfit_one_batch(get_task("swav", **params), smooth_images(32, seed=7), steps=steps)
    assert result["train_metric"] >= floor and result["last_loss"] < 0.8 * result["first_loss"], result["train_metric"]


@pytest.mark.parametrize("name, params, match", [
    ("simclr", dict(temperature=0.0), "temperature"),
    ("simclr", dict(min_scale=0.0), "min_scale"),
    ("swav", dict(n_prototypes=1), "prototypes"),
    ("swav", dict(n_small_crops=-1), "n_small_crops"),
    ("swav", dict(small_fraction=1.5), "small_fraction"),
    ("swav", dict(queue_size=-1), "queue_size"),
    ("swav", dict(small_min_scale=0.5, small_max_scale=0.3), "small_min_scale"),
    ("swav", dict(freeze_prototypes_iters=-2), "freeze_prototypes_iters"),
    ("simclr", dict(blur_p=1.5), "blur_p"),
    ("dino", dict(out_dim=1), "out_dim"),
    ("dino", dict(momentum=1.5), "momentum"),
    ("dino", dict(local_fraction=0.0), "local_fraction"),
    ("byol", dict(momentum=-0.1), "momentum"),
    ("byol", dict(min_scale=0.0), "min_scale"),
])
def test_bad_parameters_are_one_clear_config_error(name, params, match):
    with pytest.raises(ConfigError, match=match):
        get_task(name, **params)


@pytest.mark.parametrize("name", VIEW_TASKS)
def test_a_batch_of_one_is_refused(name):
    with pytest.raises(ConfigError, match="at least 2"):
        get_task(name).make_batch(torch.rand(1, 3, 8, 8), gen())
