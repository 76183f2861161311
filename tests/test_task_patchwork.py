"""patchwork: semantics on constructed images (pixel-exact in the exact-copy debug mode), labels, switches, that
no patch is a copy of its source and both labels are processed alike, and that it learns."""

import pytest
import torch
from torch.nn import functional as F

from conftest import assert_overfit, gen, one_torch_thread, smooth_images
from imgwang.data.batch import Batch
from imgwang.errors import ConfigError
from imgwang.models import create_encoder, inverse_sigmoid
from imgwang.tasks.patchwork import Patchwork
from imgwang.train.sanity import evaluate_pretext, overfit_one_batch

EXACT = dict(patch_zoom=0.0, patch_jitter=0.0)  # the seed's exact copies: pixel-exact checks


def coded_images(b, h=32, w=32):
    """Every pixel names its image and place: channel 0 = image colour, 1 = row ramp, 2 = column ramp."""
    img = torch.empty(b, 3, h, w)
    img[:, 0] = (torch.arange(b, dtype=torch.float32) / b).view(b, 1, 1)
    img[:, 1] = (torch.arange(h, dtype=torch.float32) / h).view(1, h, 1)
    img[:, 2] = (torch.arange(w, dtype=torch.float32) / w).view(1, 1, w)
    return img


def box(t, y, x, s):
    return t[..., y:y + s, x:x + s]


def check_example(images, out, i, boxes, sources, label):
    dy, dx, sy, sx, s = boxes.tolist()
    partner = int(sources[1])
    assert int(sources[0]) == i
    pasted = box(out[i], dy, dx, s)
    if label == 1:  # the same image, elsewhere
        assert partner == -1 and (sy, sx) != (dy, dx)
        assert torch.equal(pasted, box(images[i], sy, sx, s))
        assert torch.all(pasted[0] == images[i, 0, 0, 0])  # its own colour
    else:  # another image, the same place
        assert partner not in (-1, i) and (sy, sx) == (dy, dx)
        assert torch.equal(pasted, box(images[partner], dy, dx, s))
        assert torch.all(pasted[0] != images[i, 0, 0, 0])  # a foreign colour
    outside = torch.ones_like(out[i], dtype=torch.bool)
    box(outside, dy, dx, s).fill_(False)
    assert torch.equal(out[i][outside], images[i][outside])


def test_positives_and_negatives_are_what_their_labels_say():
    images = coded_images(24)
    task = Patchwork(patch_frac=0.25, **EXACT)
    out, targets, meta = task.make_batch(images, gen())
    assert out.shape == images.shape and targets.dtype == torch.float32 and targets.shape == (24,)
    assert torch.equal(targets.long(), meta["labels"])
    assert torch.equal(meta["boxes"][:, 4], torch.full((24,), 8))
    for i in range(24):
        check_example(images, out, i, meta["boxes"][i], meta["sources"][i], int(targets[i]))
    assert 0 < targets.sum() < 24


@pytest.mark.parametrize("pct_pos", [0.0, 1.0, 0.3])
def test_pct_pos_is_respected_and_sets_chance(pct_pos):
    images = coded_images(200, 16, 16)
    task = Patchwork(pct_pos=pct_pos, **EXACT)
    out, targets, meta = task.make_batch(images, gen(3))
    assert targets.sum().item() == round(pct_pos * 200)
    assert task.chance == pytest.approx(max(pct_pos, 1 - pct_pos))
    # Label 1 <=> the patch carries the image's own colour, whatever the rate.
    for i in range(0, 200, 7):
        check_example(images, out, i, meta["boxes"][i], meta["sources"][i], int(targets[i]))


def test_fixed_position_debug_mode():
    images = coded_images(16)
    out, targets, meta = Patchwork(fixed_position=True, patch_frac=0.25, **EXACT).make_batch(images, gen(1))
    s = 8
    dest = meta["boxes"][:, :2]
    src = meta["boxes"][:, 2:4]
    assert torch.all(dest == 0)
    pos = targets == 1
    assert torch.all(src[pos] == 32 - s) and torch.all(src[~pos] == 0)
    for i in range(16):
        check_example(images, out, i, meta["boxes"][i], meta["sources"][i], int(targets[i]))


def test_positions_vary_and_batch_is_deterministic_per_generator():
    images = coded_images(64)
    task = Patchwork()
    a = task.make_batch(images, gen(5))
    b = task.make_batch(images, gen(5))
    c = task.make_batch(images, gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[2]["boxes"], b[2]["boxes"])
    assert not torch.equal(a[2]["boxes"], c[2]["boxes"])
    assert a[2]["boxes"][:, 0].unique().numel() > 10 and a[2]["boxes"][:, 1].unique().numel() > 10


def test_flips_and_noise_change_the_patch_for_both_labels():
    images = coded_images(64)
    out, targets, meta = Patchwork(flip_patches=True, **EXACT).make_batch(images, gen(2))
    seen = set()
    for i in range(64):
        dy, dx, sy, sx, s = meta["boxes"][i].tolist()
        p = int(meta["sources"][i, 1])
        src = box(images[i if p < 0 else p], sy, sx, s)
        pasted = box(out[i], dy, dx, s)
        kinds = {k for k, f in {"none": src, "x": src.flip(-1), "y": src.flip(-2), "xy": src.flip(-1).flip(-2)}.items()
                 if torch.equal(pasted, f)}
        assert kinds, f"example {i}: pasted patch is not a flip of its source"
        seen |= {(k, int(targets[i])) for k in kinds}
    assert {k for k, _ in seen} >= {"none", "x", "y", "xy"} and {lab for _, lab in seen} == {0, 1}

    noisy, targets, meta = Patchwork(patch_noise=0.05).make_batch(images, gen(2))
    clean, _, _ = Patchwork().make_batch(images, gen(2))
    diff = (noisy - clean).abs()
    for i in range(64):
        dy, dx, _, _, s = meta["boxes"][i].tolist()
        inside = box(diff[i], dy, dx, s)
        assert 0 < inside.mean() < 0.1
        assert diff[i].sum() == pytest.approx(inside.sum().item())  # nothing outside the box changed


def test_prepare_traces_dataset_indices():
    images = coded_images(8)
    batch = Batch(images, torch.full((8,), -1), torch.arange(100, 108))
    _, targets, meta = Patchwork().prepare(batch, gen())
    idx = meta["indices"]
    assert torch.equal(idx[:, 0], torch.arange(100, 108))
    assert torch.equal(idx[:, 1] >= 0, targets == 0)
    assert torch.equal(idx[targets == 0, 1], 100 + meta["sources"][targets == 0, 1])


def test_bad_parameters_and_batches_are_clear_errors():
    for kw in (dict(patch_frac=0.0), dict(patch_frac=1.0), dict(pct_pos=1.5), dict(patch_noise=-1), dict(patch_zoom=1.0),
               dict(patch_jitter=-0.1)):
        with pytest.raises(ConfigError):
            Patchwork(**kw)
    with pytest.raises(ConfigError, match="at least 2"):
        Patchwork().make_batch(coded_images(1), gen())
    out, targets, _ = Patchwork(pct_pos=1.0).make_batch(coded_images(1), gen())  # positives need no partner
    assert targets.tolist() == [1.0]


def test_model_loss_and_metric():
    task = Patchwork(pct_pos=0.25)
    model = task.build_model(create_encoder("tinyconv"))
    assert model.head.out.bias.item() == pytest.approx(inverse_sigmoid(0.25))
    assert model.eval()(coded_images(1)).shape == (1,)
    logits, targets = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert task.metric(logits, targets).item() == 0.5
    assert task.loss(logits, targets).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())
    with pytest.raises(ValueError):  # (B, 1) against (B,) would broadcast to (B, B)
        task.loss(logits[:, None], targets)


def pasted_and_source(images, out, meta, i):
    dy, dx, sy, sx, s = meta["boxes"][i].tolist()
    partner = int(meta["sources"][i, 1])
    return box(out[i], dy, dx, s), images[i if partner < 0 else partner], (sy, sx, s)


def test_no_patch_is_a_pixel_copy_of_any_part_of_its_source_image():
    """A copy-move detector finds nothing: no pasted patch, positive or negative, equals any patch-sized window of
    the image it came from (in the exact-copy debug mode every one does)."""
    images = smooth_images(24, size=32, grid=8, margin=0.1)
    for frac, kw, least in ((0.5, dict(), 1e-2), (0.25, dict(patch_jitter=0.0), 1e-5), (0.5, EXACT, 0.0)):
        out, targets, meta = Patchwork(patch_frac=frac, **kw).make_batch(images, gen(4))
        assert 0 < targets.sum() < 24
        for i in range(24):
            pasted, source, (_, _, s) = pasted_and_source(images, out, meta, i)
            windows = source.unfold(1, s, 1).unfold(2, s, 1)  # (C, n, n, s, s): every window of the source
            closest = (windows - pasted[:, None, None]).abs().amax(dim=(0, 3, 4)).min().item()
            assert (closest == 0) if kw == EXACT else (closest > least), (frac, kw, i, closest)


def test_a_resampled_patch_still_comes_from_its_source_box():
    """Without the tone jitter, coded pixels show where a resampled patch came from: the source image's colour, and
    row and column ramps inside the source box (never outside it)."""
    images = coded_images(64)
    out, targets, meta = Patchwork(patch_jitter=0.0).make_batch(images, gen(8))
    for i in range(64):
        pasted, source, (sy, sx, s) = pasted_and_source(images, out, meta, i)
        assert torch.allclose(pasted[0], source[0, 0, 0].expand_as(pasted[0]))  # the source image's own colour
        for channel, start in ((1, sy), (2, sx)):  # ramps stay within the source box (bilinear: up to its edges)
            assert pasted[channel].min() >= (start - 0.5) / 32 and pasted[channel].max() <= (start + s - 0.5) / 32
        assert not torch.equal(pasted, box(source, sy, sx, s))


def test_positives_and_negatives_are_resampled_alike():
    """The processing is no cue: a patch's sharpness relative to its source box (mean absolute difference of
    neighbouring pixels) and its tone change are distributed alike for both labels, and differ from an exact copy."""
    images = smooth_images(400, size=32, grid=10, margin=0.1)
    out, targets, meta = Patchwork().make_batch(images, gen(5))
    sharp, tone = torch.empty(400), torch.empty(400)
    for i in range(400):
        pasted, source, (sy, sx, s) = pasted_and_source(images, out, meta, i)
        src = box(source, sy, sx, s)
        sharp[i] = (pasted.diff(dim=-1).abs().mean() / src.diff(dim=-1).abs().mean()).item()
        tone[i] = (pasted.mean() / src.mean() - 1).abs().item()
    pos, neg = targets == 1, targets == 0
    assert pos.sum() > 150 and neg.sum() > 150
    assert sharp[pos].mean() < 0.97 and sharp[neg].mean() < 0.97  # both resampled (an exact copy gives 1)
    assert abs(sharp[pos].mean() - sharp[neg].mean()) < 0.03
    assert tone[pos].mean() > 0.01 and abs(tone[pos].mean() - tone[neg].mean()) < 0.01


@pytest.fixture(scope="module")
def overfit():
    with one_torch_thread():
        task = Patchwork()
        yield task, overfit_one_batch(task, smooth_images(32, grid=4), steps=120, lr=3e-3, seed=0)


def test_overfits_one_batch(overfit):
    assert_overfit(overfit[1])


def test_noise_switch_brings_metric_to_chance(overfit):
    task, result = overfit
    model = result["model"]
    noisy = Patchwork(noise_p=1.0)
    batches = [Batch(smooth_images(32, seed=s, grid=4), torch.full((32,), -1), torch.arange(32)) for s in range(16)]
    on_noise = evaluate_pretext(noisy, model, batches, seed=1)
    assert abs(on_noise["metric"] - noisy.chance) < 0.1
    # ...while the same model on the batch it memorised, inputs intact, is far above chance.
    seen = evaluate_pretext(task, model, [smooth_images(32, grid=4)], seed=0)
    assert seen["metric"] >= 0.9
    # The memorised batch itself (same seed: same targets), inputs replaced by noise: the memory is gone.
    hidden = evaluate_pretext(noisy, model, [smooth_images(32, grid=4)], seed=0)
    assert hidden["metric"] <= noisy.chance + 0.3


@pytest.mark.parametrize("patch_frac, min_gap", [(0.5, 0.0), (0.3, 0.1), (0.25, 0.0)])
def test_a_positive_never_overlaps_its_own_destination(patch_frac, min_gap):
    images = coded_images(400)
    out, targets, meta = Patchwork(patch_frac=patch_frac, min_gap=min_gap, pct_pos=1.0, **EXACT).make_batch(images, gen(7))
    dy, dx, sy, sx, s = meta["boxes"].T
    gap = round(min_gap * 32)
    apart = ((dy - sy).abs() >= s + gap) | ((dx - sx).abs() >= s + gap)
    assert torch.all(apart)  # separated along an axis by the patch side plus the gap: no shared pixel
    for i in range(0, 400, 37):
        check_example(images, out, i, meta["boxes"][i], meta["sources"][i], 1)
    # both axes used, and both orders (source before and after the destination)
    assert (dy != sy).any() and (dx != sx).any() and (sy > dy).any() and (sy < dy).any()
    if gap == 0 and patch_frac == 0.25:  # small patches: destinations cover the image, not just its edges
        assert meta["boxes"][:, 0].unique().numel() == 32 - 8 + 1


def test_where_the_patch_goes_does_not_depend_on_the_label():
    """The destination is drawn before and apart from the label: the same generator state gives the same
    destinations for all-negative and all-positive batches, so position says nothing about the label."""
    images = coded_images(64)
    neg = Patchwork(pct_pos=0.0).make_batch(images, gen(9))[2]["boxes"]
    pos = Patchwork(pct_pos=1.0).make_batch(images, gen(9))[2]["boxes"]
    assert torch.equal(neg[:, :2], pos[:, :2])
    assert torch.equal(neg[:, 2:4], neg[:, :2]) and not torch.equal(pos[:, 2:4], pos[:, :2])


def test_too_large_a_patch_for_the_gap_is_a_clear_error():
    with pytest.raises(ConfigError, match="2 x patch_frac"):
        Patchwork(patch_frac=0.5, min_gap=0.1)
    _, _, meta = Patchwork(patch_frac=0.5).make_batch(coded_images(4, 35, 35), gen())
    assert torch.all(meta["boxes"][:, 4] == 17)  # rounding down where 0.5 x 35 would not fit twice
    with pytest.raises(ConfigError, match="min_gap"):
        Patchwork(min_gap=1.0)


def test_in_the_stage_every_image_of_a_batch_has_the_same_zoom():
    """With view_size set (the pretraining stage hands over whole stored images), patchwork crops every
    image with one area and aspect: a negative's patch is no sharper or blurrier than its host."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 40), indexing="ij")
    whole = torch.stack([x, y, torch.full_like(x, 0.5)])[None].expand(32, -1, -1, -1).contiguous()
    task = Patchwork(pct_pos=1.0, patch_frac=0.25, **EXACT)  # exact copies: the patch's span is the crop's
    task.view_size = 32
    spans = []
    for seed in range(3):
        out, _, meta = task.make_batch(whole, gen(seed))
        width = out[:, 0].amax((1, 2)) - out[:, 0].amin((1, 2))
        height = out[:, 1].amax((1, 2)) - out[:, 1].amin((1, 2))
        assert width.max() - width.min() < 1e-5 and height.max() - height.min() < 1e-5  # one zoom per batch
        assert out[:, 0].amin((1, 2)).unique().numel() > 3  # positions per image
        assert out.shape == (32, 3, 32, 32)  # positives only: every pixel comes from the image's own crop
        spans.append(float(width[0] * height[0]))
    assert len(set(round(a, 4) for a in spans)) == 3  # a new zoom for each batch
