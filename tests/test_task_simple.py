"""Semantics of the single-image pretext tasks: rotation, quadrant, scale, transform.

Each test rebuilds what the task claims to have done from the task's own stated labels/boxes with
independent code, so a wrong label, box or transform fails here (the seed's tasks never learned for
exactly such bugs). Learning itself is checked for every task in test_tasks_common.py.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from conftest import gen, smooth_images
from imgwang.core.errors import ConfigError, DataError
from imgwang.data.batch import Batch
from imgwang.models.encoders import create_encoder
from imgwang.tasks import get_task

# --- rotation -------------------------------------------------------------------------------------

def test_rotation_rotating_back_recovers_the_original():
    images = smooth_images(32)
    task = get_task("rotation")
    inputs, k, meta = task.make_batch(images, gen(1))
    assert k.dtype == torch.long and set(k.tolist()) <= {0, 1, 2, 3}
    for i in range(len(images)):
        assert torch.equal(torch.rot90(inputs[i], -int(k[i]), dims=(1, 2)), images[i])
    # a rotated image is not the original unless k = 0 (the images are not symmetric)
    changed = (inputs - images).abs().flatten(1).amax(1) > 0
    assert torch.equal(changed, k != 0)
    assert torch.equal(meta["sources"][:, 0], torch.arange(32))


def test_rotation_draws_every_quarter_turn_evenly():
    _, k, _ = get_task("rotation").make_batch(torch.rand(800, 3, 4, 4), gen(2))
    counts = torch.bincount(k, minlength=4)
    assert counts.min() > 150 and counts.max() < 250  # 200 each expected


def test_rotation_rejects_non_square_images():
    with pytest.raises(DataError, match="square"):
        get_task("rotation").make_batch(torch.rand(4, 3, 8, 12), gen())


def test_rotation_loss_and_metric_follow_the_labels():
    task = get_task("rotation")
    targets = torch.tensor([0, 1, 2, 3])
    right = F.one_hot(targets, 4).float() * 10
    wrong = F.one_hot((targets + 1) % 4, 4).float() * 10
    assert float(task.metric(right, targets)) == 1.0 and float(task.metric(wrong, targets)) == 0.0
    assert float(task.loss(right, targets)) < 0.01 < 5 < float(task.loss(wrong, targets))
    assert task.chance == 0.25


# --- quadrant -------------------------------------------------------------------------------------

QUADRANT_CORNERS = {0: (0, 0), 1: (0, 16), 2: (16, 0), 3: (16, 16)}  # (top, left) in a 32 px image


def test_quadrant_crop_shows_that_quadrant_zoomed_to_full_size():
    images = smooth_images(24)
    inputs, q, meta = get_task("quadrant").make_batch(images, gen(3))
    assert inputs.shape == images.shape and set(q.tolist()) == {0, 1, 2, 3}
    for i in range(len(images)):
        top, left = QUADRANT_CORNERS[int(q[i])]
        quarter = images[i : i + 1, :, top : top + 16, left : left + 16]
        expected = F.interpolate(quarter, size=(32, 32), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(inputs[i], expected)
        assert meta["boxes"][i].tolist() == [top, left, 16, 16]


def test_quadrant_crop_of_four_flat_colours_is_the_flat_colour_of_its_quadrant():
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])  # TL, TR, BL, BR
    image = torch.empty(3, 32, 32)
    for q, (top, left) in QUADRANT_CORNERS.items():
        image[:, top : top + 16, left : left + 16] = colours[q][:, None, None]
    inputs, q, _ = get_task("quadrant").make_batch(image.expand(16, -1, -1, -1).contiguous(), gen(4))
    for i in range(16):
        assert torch.allclose(inputs[i], colours[int(q[i])][:, None, None].expand(3, 32, 32))


def test_quadrant_mask_keeps_exactly_that_quadrant():
    images = smooth_images(16)
    inputs, q, _ = get_task("quadrant", mode="mask").make_batch(images, gen(5))
    for i in range(16):
        top, left = QUADRANT_CORNERS[int(q[i])]
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[top : top + 16, left : left + 16] = True
        assert torch.equal(inputs[i][:, inside], images[i][:, inside])
        assert torch.all(inputs[i][:, ~inside] == 0.5)


def test_quadrant_boxes_stay_inside_odd_sized_images():
    images = torch.rand(32, 3, 33, 33, generator=gen())
    inputs, q, meta = get_task("quadrant").make_batch(images, gen(6))
    top, left, h, w = meta["boxes"].T
    assert torch.all(h == 16) and torch.all(w == 16)
    assert torch.all(top + h <= 33) and torch.all(left + w <= 33)
    assert torch.equal(top > 0, q >= 2) and torch.equal(left > 0, q % 2 == 1)


def test_quadrant_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="mode"):
        get_task("quadrant", mode="jigsaw")


# --- scale ----------------------------------------------------------------------------------------

def test_scale_one_is_the_input_and_other_scales_are_the_stated_centre_box_resized():
    images = smooth_images(48)
    task = get_task("scale")  # scales 1, 1.5, 2, 3
    inputs, label, meta = task.make_batch(images, gen(7))
    assert set(label.tolist()) == {0, 1, 2, 3}
    for i in range(len(images)):
        s = task.scales[int(label[i])]
        side = round(32 / s)
        top = left = (32 - side) // 2
        assert meta["boxes"][i].tolist() == [top, left, side, side]
        if s == 1.0:
            assert torch.equal(inputs[i], images[i])
        else:
            crop = images[i : i + 1, :, top : top + side, left : left + side]
            expected = F.interpolate(crop, size=(32, 32), mode="bilinear", align_corners=False)[0]
            torch.testing.assert_close(inputs[i], expected)


def test_scale_zooms_a_ramp_by_the_stated_factor():
    # Brightness grows left to right; zooming in by s spreads it over s times the pixels: slope / s.
    ramp = torch.linspace(0, 1, 64).expand(8, 3, 64, 64).contiguous()
    task = get_task("scale", scales=(1.0, 2.0, 4.0))
    inputs, label, _ = task.make_batch(ramp, gen(8))
    def slope(x):  # interior, away from borders
        return (x[..., 24:40, 25:39] - x[..., 24:40, 24:38]).mean()

    for i in range(8):
        zoom = task.scales[int(label[i])]
        assert float(slope(ramp[i]) / slope(inputs[i])) == pytest.approx(zoom, rel=0.05)


def test_scale_random_crops_move_and_stay_inside():
    images = smooth_images(64)
    task = get_task("scale", crop="random")
    inputs, label, meta = task.make_batch(images, gen(9))
    top, left, h, w = meta["boxes"].T
    assert torch.all(top >= 0) and torch.all(left >= 0) and torch.all(top + h <= 32) and torch.all(left + w <= 32)
    zoomed = label == 3  # side 11: 22 possible positions per axis
    assert len(set(top[zoomed].tolist())) > 3 and len(set(left[zoomed].tolist())) > 3
    for i in torch.nonzero(zoomed)[:, 0].tolist():
        t, lf, s = int(top[i]), int(left[i]), int(h[i])
        expected = F.interpolate(images[i : i + 1, :, t : t + s, lf : lf + s], size=(32, 32), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(inputs[i], expected)


def test_scale_chance_and_model_follow_the_number_of_scales():
    from imgwang.models.encoders import create_encoder

    task = get_task("scale", scales=[1, 2, 3])
    assert task.chance == pytest.approx(1 / 3)
    model = task.build_model(create_encoder("tinyconv"))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0), (1.0, 2.0, 2.0)])
def test_scale_rejects_bad_scales(scales):
    with pytest.raises(ConfigError, match="zoom"):
        get_task("scale", scales=scales)


def test_scale_rejects_images_too_small_to_tell_scales_apart():
    with pytest.raises(DataError, match="too small"):
        get_task("scale").make_batch(torch.rand(4, 3, 3, 3), gen())


# --- transform ------------------------------------------------------------------------------------

def reference(name, image):
    """The transforms written independently of the task, on one (3, H, W) image."""
    if name == "vflip":
        return image.flip(1)
    if name == "hflip_vflip":
        return torch.rot90(image, 2, dims=(1, 2))
    if name == "grayscale":
        y = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
        return y.expand(3, -1, -1)
    if name == "invert":
        return 1 - image
    raise KeyError(name)


@pytest.mark.parametrize("name", ["vflip", "hflip_vflip", "grayscale", "invert"])
def test_transform_applied_examples_are_transformed_and_the_rest_untouched(name):
    images = smooth_images(32)
    inputs, targets, meta = get_task("transform", transform=name).make_batch(images, gen(10))
    assert targets.dtype == torch.float32 and 0 < targets.sum() < 32
    for i in range(32):
        if targets[i] == 1:
            torch.testing.assert_close(inputs[i], reference(name, images[i]))
            assert not torch.equal(inputs[i], images[i])
        else:
            assert torch.equal(inputs[i], images[i])


def test_transform_channel_shuffle_is_a_real_permutation_and_all_five_occur():
    images = smooth_images(200, size=4)
    inputs, targets, _ = get_task("transform", transform="channel_shuffle").make_batch(images, gen(11))
    seen = set()
    for i in range(200):
        if targets[i] == 0:
            assert torch.equal(inputs[i], images[i])
            continue
        orders = [p for p in itertools.permutations(range(3)) if torch.equal(inputs[i], images[i][list(p)])]
        assert len(orders) == 1 and orders[0] != (0, 1, 2)
        seen.add(orders[0])
    assert len(seen) == 5


def test_transform_applies_to_about_pct_applied():
    task = get_task("transform", transform="invert", pct_applied=0.3)
    _, targets, meta = task.make_batch(torch.rand(1000, 3, 2, 2), gen(12))
    assert 0.25 < float(targets.mean()) < 0.35
    assert torch.equal(meta["applied"], targets.bool())
    assert task.chance == pytest.approx(0.7)


def test_transform_model_emits_one_logit_per_image_and_starts_at_the_applied_rate():
    from imgwang.models.encoders import create_encoder

    task = get_task("transform", pct_applied=0.8)
    model = task.build_model(create_encoder("tinyconv")).eval()
    logits = model(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3,)
    targets = torch.tensor([1.0, 0.0, 1.0])
    assert float(task.metric(torch.tensor([2.0, -1.0, 0.5]), targets)) == 1.0
    assert float(task.metric(torch.tensor([-2.0, 1.0, 0.5]), targets)) == pytest.approx(1 / 3)
    assert float(task.loss(torch.tensor([9.0, -9.0, 9.0]), targets)) < 0.01


@pytest.mark.parametrize("params, match", [
    (dict(transform="hflip"), "transform must be one of"),
    (dict(transform="sepia"), "transform must be one of"),
    (dict(pct_applied=0.0), "pct_applied"),
    (dict(pct_applied=1.0), "pct_applied"),
])
def test_transform_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        get_task("transform", **params)


# --- learning on fresh images, not one memorised batch -----------------------------------------------

def scenes(b, size, g):
    """Sky above a horizon, ground below, a round object near the centre: the layout photos share.

    Each task has something real to find here (which way is up, where a quarter sits, how big the
    object looks, whether colours/orientation are natural), so a working task must generalise to
    new scenes; a broken label or loss cannot.
    """
    ys = torch.linspace(0, 1, size)[:, None].expand(size, size)
    xs = torch.linspace(0, 1, size)[None, :].expand(size, size)
    horizon = 0.4 + 0.2 * torch.rand(b, 1, 1, generator=g)
    sky = torch.tensor([0.45, 0.65, 0.95])[:, None, None] * (0.8 + 0.2 * ys)
    ground = torch.tensor([0.35, 0.55, 0.2])[:, None, None] * (1.0 - 0.3 * ys)
    image = torch.where((ys < horizon)[:, None], sky, ground)
    cy, cx = 0.5 + 0.1 * (torch.rand(2, b, 1, 1, generator=g) - 0.5)
    radius = 0.15 + 0.1 * torch.rand(b, 1, 1, generator=g)
    disc = ((ys - cy) ** 2 + (xs - cx) ** 2) < radius**2
    colour = torch.rand(b, 3, 1, 1, generator=g) * 0.5 + torch.tensor([0.5, 0.1, 0.1])[:, None, None]
    image = torch.where(disc[:, None], colour.expand(b, 3, size, size), image)
    return (image + 0.03 * torch.randn(image.shape, generator=g)).clamp(0, 1)


def train_on_fresh_scenes(task, steps=80, b=32, size=32):
    """Adam on a new batch of scenes every step; returns the metric on 256 unseen scenes (eval mode)."""
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(0)
    for _ in range(steps):
        batch = Batch(scenes(b, size, g), torch.full((b,), -1), torch.arange(b))
        inputs, targets, _ = task.prepare(batch, g)
        loss = task.loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        held_out = Batch(scenes(256, size, gen(123)), torch.full((256,), -1), torch.arange(256))
        inputs, targets, _ = task.prepare(held_out, gen(5))
        return float(task.metric(model(inputs), targets))


LEARNABLE = [
    ("rotation", {}),
    ("quadrant", {}),
    ("scale", {}),
    ("transform", {}),
    ("transform", dict(transform="vflip")),
]


@pytest.mark.parametrize("name, params", LEARNABLE)
def test_task_learns_what_generalises_to_unseen_images(name, params):
    task = get_task(name, **params)
    assert train_on_fresh_scenes(task) > task.chance + 0.35  # seen: 0.82 (scale) to 1.0 (others)


@pytest.mark.parametrize("name, params", LEARNABLE)
def test_the_same_training_on_noise_stays_at_chance(name, params):
    task = get_task(name, noise_p=1.0, **params)  # inputs replaced by noise, in training and held out
    assert abs(train_on_fresh_scenes(task) - task.chance) < 0.12  # 256 examples: sd <= 0.031
