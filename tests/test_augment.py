"""Per-sample batched augmentation: ranges, per-sample parameters, flip and resize semantics, determinism."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from imgwang.core.errors import ConfigError, DataError
from imgwang.data.augment import make_augment, sample_crop_boxes

S, OUT = 40, 24


def _images(b=6, seed=0):
    """Smooth but asymmetric images: a horizontal ramp, a vertical ramp and a blob, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, S), torch.linspace(0, 1, S), indexing="ij")
    base = torch.stack([x, y, ((x - 0.2) ** 2 + (y - 0.7) ** 2 < 0.05).float()])
    imgs = base[None] * 200 + torch.rand(b, 3, S, S, generator=g) * 40 + torch.arange(b).view(b, 1, 1, 1)
    return imgs.round().clamp(0, 255).to(torch.uint8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("method", ["loop", "roi"])
@pytest.mark.parametrize("mode", ["pretrain", "train", "eval"])
def test_shape_dtype_range(mode, method):
    out = make_augment(OUT, mode, method=method)(_images(), _gen())
    assert out.shape == (6, 3, OUT, OUT) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.max() > 0.5  # not all-black: values were scaled once


@pytest.mark.parametrize("method", ["loop", "roi"])
def test_parameters_differ_per_sample(method):
    same = _images(1).expand(16, -1, -1, -1).contiguous()
    out = make_augment(OUT, "pretrain", method=method)(same, _gen(3))
    flat = out.flatten(1)
    distinct = {tuple(torch.round(r * 255).to(torch.int32)[:64].tolist()) for r in flat}
    assert len(distinct) >= 12  # 16 copies of one image -> (nearly) all different crops
    boxes = sample_crop_boxes(256, S, S, (0.35, 1.0), (3 / 4, 4 / 3), _gen(5))
    areas = (boxes[:, 2] * boxes[:, 3]).float() / (S * S)
    assert areas.min() >= 0.3 and areas.max() <= 1.0 and areas.std() > 0.1
    assert (boxes[:, 0] + boxes[:, 2] <= S).all() and (boxes[:, 1] + boxes[:, 3] <= S).all()
    assert len(set(boxes[:, 0].tolist())) > 10  # positions vary too


@pytest.mark.parametrize("method", ["loop", "roi"])
def test_full_crop_with_forced_flip_is_the_mirrored_resize(method):
    imgs = _images()
    plain = F.interpolate(imgs.float(), size=(OUT, OUT), mode="bilinear", antialias=True) / 255
    full = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), method=method)
    flipped = make_augment(OUT, "train", flip_p=1.0, **full)(imgs, _gen())
    kept = make_augment(OUT, "train", flip_p=0.0, **full)(imgs, _gen())
    tol = 1 / 255 if method == "loop" else 2 / 255  # roi_align's 2x2 box filter is a slightly different kernel
    assert (flipped - plain.flip(-1)).abs().mean() < tol
    assert (kept - plain).abs().mean() < tol
    assert (flipped - plain).abs().mean() > 0.1  # the flip really changed the image


@pytest.mark.parametrize("method", ["loop", "roi"])
@pytest.mark.parametrize("mode", ["pretrain", "eval"])
def test_memory_layout_changes_neither_the_result_nor_the_output_layout(mode, method):
    """The cache hands over channels-last batches (the fast layout for the CPU resize): same pixels out as
    for planar input, and always a plain contiguous float batch."""
    imgs = _images(8)
    planar = make_augment(OUT, mode, method=method)(imgs, _gen(4))
    interleaved = make_augment(OUT, mode, method=method)(imgs.contiguous(memory_format=torch.channels_last), _gen(4))
    assert torch.equal(planar, interleaved)
    assert interleaved.is_contiguous() and planar.is_contiguous()


def test_crop_box_is_where_the_pixels_come_from():
    """A small crop must show that region of the image: compare with the plain resize of the same box."""
    imgs = _images(4)
    aug = make_augment(OUT, "train", scale=(0.35, 0.4), flip_p=0.0, method="loop")
    g1, g2 = _gen(11), _gen(11)
    out = aug(imgs, g1)
    boxes = sample_crop_boxes(4, S, S, aug.scale, aug.ratio, g2)
    for i, (x0, y0, w, h) in enumerate(boxes.tolist()):
        ref = F.interpolate(imgs[i : i + 1, :, y0 : y0 + h, x0 : x0 + w].float(), (OUT, OUT), mode="bilinear", antialias=True)
        assert (out[i] - ref[0] / 255).abs().max() < 2 / 255
    roi = make_augment(OUT, "train", scale=(0.35, 0.4), flip_p=0.0, method="roi")(imgs, _gen(11))
    assert (roi - out).abs().mean() < 0.03  # both methods crop the same boxes


@pytest.mark.parametrize("method", ["loop", "roi"])
def test_deterministic_given_a_generator(method):
    aug = make_augment(OUT, "pretrain", jitter=0.5, method=method)
    a, b, c = aug(_images(), _gen(7)), aug(_images(), _gen(7)), aug(_images(), _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("method", ["loop", "roi"])
def test_float_images_get_the_crops_their_uint8_twins_get(method):
    """simclr and swav crop views of float batches: the same boxes, flips and pixels as the cache's uint8."""
    imgs = _images()
    aug = make_augment(OUT, "pretrain", method=method)
    from_uint8, from_float = aug(imgs, _gen(5)), aug(imgs.float() / 255, _gen(5))
    assert from_float.dtype == torch.float32 and from_float.min() >= 0 and from_float.max() <= 1
    assert (from_float - from_uint8).abs().max() < 1.5 / 255  # uint8 kernels round to whole levels
    evaluated = make_augment(OUT, "eval")(imgs.float() / 255, None)
    assert (evaluated - make_augment(OUT, "eval")(imgs, None)).abs().max() < 1.5 / 255


def test_eval_is_a_plain_resize_without_randomness():
    imgs = _images()
    out = make_augment(OUT, "eval")(imgs, None)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()).resize((OUT, OUT), Image.Resampling.BILINEAR) for im in imgs]
    ref = torch.from_numpy(np.stack([np.asarray(p) for p in pil])).permute(0, 3, 1, 2).float() / 255
    assert (out - ref).abs().mean() < 1.5 / 255  # PIL's antialiased bilinear
    assert torch.equal(out, make_augment(OUT, "eval")(imgs, _gen(1)))
    same = make_augment(S, "eval")(imgs, None)
    assert torch.equal(same, imgs.float() / 255)


def test_color_jitter_changes_colours_per_sample_but_keeps_range():
    imgs = _images(8)
    full = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    plain = make_augment(OUT, "pretrain", **full)(imgs, _gen(2))
    jit = make_augment(OUT, "pretrain", jitter=0.5, **full)(imgs, _gen(2))
    assert jit.min() >= 0 and jit.max() <= 1
    changed = (jit - plain).abs().flatten(1).mean(1) > 0.01
    assert 2 <= int(changed.sum()) <= 8  # applied to most samples (p=0.8), each its own way
    means = jit.mean(dim=(1, 2, 3))
    assert means.std() > 0.01


def test_bad_input_and_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="mode"):
        make_augment(OUT, "random")
    with pytest.raises(ConfigError, match="scale"):
        make_augment(OUT, "train", scale=(0.5, 1.5))
    with pytest.raises(DataError, match="uint8 or float"):
        make_augment(OUT, "train")(torch.ones(2, 3, S, S, dtype=torch.int64), _gen())
    with pytest.raises(DataError, match="uint8 or float"):
        make_augment(OUT, "train")(torch.rand(2, 1, S, S), _gen())
    with pytest.raises(ConfigError, match="jitter"):
        make_augment(OUT, "train", jitter=-0.1)
    with pytest.raises(ConfigError, match="Generator"):
        make_augment(OUT, "train")(_images(), None)


def test_the_crop_workers_run_under_the_callers_inference_mode():
    """Review makes simclr views under torch.inference_mode: the worker threads must not see a plain mode
    (an in-place write to an inference tensor outside it is an error)."""
    with torch.inference_mode():
        out = make_augment(OUT, "pretrain", method="loop")(_images(8).float() / 255, _gen(3))
    assert out.is_inference() and out.shape == (8, 3, OUT, OUT)
