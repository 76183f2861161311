"""Batched per-sample augmentation on the device: uint8 cache rows (or float images in [0, 1]) in, float
images in [0, 1] out. The loader uses it on cache rows; simclr and swav make their views with it.

`make_augment(size, mode)` returns a callable `augment(images, generator) -> float`:
  "pretrain" / "train": RandomResizedCrop (torchvision's sampling rule, parameters drawn per sample,
                        vectorised) + horizontal flip, optional SimCLR colour jitter (`jitter` strength);
  "eval":               the whole (square) stored image resized to size; no randomness.
Every random parameter comes from the given generator, on the images' device: no host round trip.

How the crops are resampled depends on the device, because the fastest correct kernel does
(measured on a 2-core CPU, batch 64, 160 -> 128 px, img/s, planar input unless said):
  per-sample F.interpolate on uint8, antialias   ~8,000; ~16,000 on channels-last input  <- "loop", the CPU's
  same on float                                  ~6,500
  torchvision roi_align, 1 / 2x2 samples per px  ~2,300 / ~1,100  <- "roi", used on a GPU: one kernel
  kornia crop_and_resize                         ~1,600
  affine_grid + grid_sample                      ~1,000
The uint8 kernel is fastest on channels-last input, which is how the cache hands batches over (its rows
are stored (S, S, 3)): 1.4x over planar input on one core, 2x with the two worker threads, measured.
The loop launches ~3 tiny kernels per image, which a GPU punishes; roi_align does the whole batch in one
kernel and averages 2x2 bilinear samples per output pixel, an antialias filter for up to 2x shrinking.
"""

from __future__ import annotations

import contextlib
import functools
import math
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from ..device import torch_threads
from ..errors import ConfigError, DataError
from ..threads import budget

MODES = ("pretrain", "train", "eval")
METHODS = ("auto", "loop", "roi")


def make_augment(size: int, mode: str, scale=(0.35, 1.0), *, ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter: float = 0.0, method: str = "auto") -> "Augment":
    """Build the augmentation for a stage; see the module docstring for the modes."""
    return Augment(size, mode, scale=scale, ratio=ratio, flip_p=flip_p, jitter=jitter, method=method)


class Augment:
    def __init__(self, size: int, mode: str, *, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter: float = 0.0, method: str = "auto"):
        if mode not in MODES:
            raise ConfigError(f"unknown augmentation mode {mode!r}; use one of {', '.join(MODES)}")
        if method not in METHODS:
            raise ConfigError(f"unknown augmentation method {method!r}; use one of {', '.join(METHODS)}")
        if int(size) < 1:
            raise ConfigError(f"augmentation size must be a positive number of pixels, got {size}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ConfigError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ConfigError(f"crop aspect ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        if not 0 <= flip_p <= 1:
            raise ConfigError(f"flip probability must be in [0, 1], got {flip_p}")
        if not jitter >= 0:
            raise ConfigError(f"colour jitter strength must be >= 0 (0 = none), got {jitter}")
        self.size, self.mode, self.method = int(size), mode, method
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.flip_p, self.jitter = float(flip_p), float(jitter)

    def __repr__(self) -> str:
        return (f"Augment(size={self.size}, mode={self.mode!r}, scale={self.scale}, flip_p={self.flip_p}, "
                f"jitter={self.jitter}, method={self.method!r})")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not (images.dtype == torch.uint8 or images.is_floating_point()) or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"augment expects uint8 or float images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if self.mode != "eval" and generator is None:
            raise ConfigError(f"mode {self.mode!r} is random: pass a torch.Generator so runs are reproducible")
        # One image per kernel on the CPU: a thread team per tiny kernel costs more than it saves.
        with torch_threads(1) if images.device.type == "cpu" else contextlib.nullcontext():
            out = self._crop(images, generator)
        if self.jitter > 0 and self.mode != "eval":  # whole-batch kernels: here the caller's threads pay off (1.6x)
            out = color_jitter(out, generator, strength=0.8 * self.jitter, hue=0.2 * self.jitter)
        return out

    def _crop(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.mode == "eval":
            return resize(images, self.size)
        b, _, h, w = images.shape
        boxes = sample_crop_boxes(b, h, w, self.scale, self.ratio, generator).to(images.device)
        flips = (_rand(b, generator) < self.flip_p).to(images.device)
        method = self.method if self.method != "auto" else ("loop" if images.device.type == "cpu" else "roi")
        crop = crop_resize_loop if method == "loop" else crop_resize_roi
        return crop(images, boxes, flips, self.size)


def _rand(shape, generator: torch.Generator) -> torch.Tensor:
    shape = (shape,) if isinstance(shape, int) else shape
    return torch.rand(shape, generator=generator, device=generator.device)


def sample_crop_boxes(n: int, h: int, w: int, scale, ratio, generator, tries: int = 10) -> torch.Tensor:
    """(n, 4) long boxes (x0, y0, width, height), torchvision's RandomResizedCrop rule drawn for all at once.

    Up to `tries` (area, aspect) draws per sample; the first that fits wins; samples where none fit get
    the centre crop with the aspect ratio clamped into range, as torchvision does.
    """
    area = h * w
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand((n, tries), generator))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand((n, tries), generator))
    cw = torch.sqrt(target * aspect).round().long()
    ch = torch.sqrt(target / aspect).round().long()
    fits = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
    first = fits.long().argmax(dim=1, keepdim=True)  # index of the first True (0 if none, fixed below)
    cw, ch, found = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0], fits.any(dim=1)

    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(h * ratio[1])), h
    else:
        fw, fh = w, h
    cw = torch.where(found, cw, torch.full_like(cw, fw))
    ch = torch.where(found, ch, torch.full_like(ch, fh))
    x0 = (_rand(n, generator) * (w - cw + 1)).long().clamp(max=w - 1)
    y0 = (_rand(n, generator) * (h - ch + 1)).long().clamp(max=h - 1)
    x0 = torch.where(found, x0, (w - cw) // 2)
    y0 = torch.where(found, y0, (h - ch) // 2)
    return torch.stack([x0, y0, cw, ch], dim=1)


def crop_resize_loop(images, boxes, flips, size: int) -> torch.Tensor:
    """Per-sample antialiased resize of each crop (uint8 kernels on the CPU); fastest on a CPU.

    On the CPU the batch is split over one Python thread per core of the stage's share, each running single-threaded kernels
    (torch releases the GIL in them) and writing its share of the float batch in place."""
    b = images.shape[0]
    out = torch.empty((b, 3, size, size), dtype=torch.float32, device=images.device)
    workers = min(budget(), 8, b) if images.device.type == "cpu" else 1  # the stage's share of the cores
    parts = [slice(i * b // workers, (i + 1) * b // workers) for i in range(workers)]

    inference = torch.is_inference_mode_enabled()  # thread-local: the workers must share the caller's

    def fill(s: slice) -> None:
        with torch.inference_mode(inference):
            _crop_resize_into(out[s], images[s], boxes[s], flips[s])

    if workers > 1:
        list(_pool(workers).map(fill, parts))
    else:
        fill(parts[0])
    return out


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    # One intra-op thread per worker: the thread count is per OS thread, and a worker left at the default
    # runs each tiny kernel on a team of its own, oversubscribing the cores (1.4x slower on 2 cores, measured).
    return ThreadPoolExecutor(workers, thread_name_prefix="imgwang-augment",
                              initializer=torch.set_num_threads, initargs=(1,))


def _crop_resize_into(dst: torch.Tensor, images, boxes, flips) -> None:
    size = dst.shape[-1]
    src = images if images.device.type == "cpu" or images.is_floating_point() else images.float()
    # Resized crops of channels-last input come out channels-last: collect them as (H, W, 3) rows, a plain
    # copy each (into planar rows it was a strided one, as slow as the resize), and convert once at the end.
    rows = torch.empty((len(dst), size, size, 3), dtype=src.dtype, device=images.device)
    for i, ((x0, y0, cw, ch), flip) in enumerate(zip(boxes.tolist(), flips.tolist())):
        crop = src[i : i + 1, :, y0 : y0 + ch, x0 : x0 + cw]
        r = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        r = r.permute(1, 2, 0)
        rows[i] = r.flip(1) if flip else r
    dst.copy_(rows.permute(0, 3, 1, 2))
    if images.dtype == torch.uint8:
        dst.div_(255.0)
    if rows.dtype != torch.uint8:
        dst.clamp_(0, 1)  # float bilinear can overshoot


def crop_resize_roi(images, boxes, flips, size: int) -> torch.Tensor:
    """All crops in one roi_align call (2x2 bilinear samples per output pixel): one kernel on a GPU."""
    from torchvision.ops import roi_align

    b = images.shape[0]
    x = to_float(images)
    xy0 = boxes[:, :2].to(x.dtype)
    rois = torch.cat([torch.arange(b, device=x.device, dtype=x.dtype)[:, None], xy0, xy0 + boxes[:, 2:].to(x.dtype)], 1)
    out = roi_align(x, rois, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return torch.where(flips[:, None, None, None], out.flip(-1), out).clamp_(0, 1)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, size, size) in [0, 1], antialiased bilinear, the whole image."""
    if images.shape[-2:] == (size, size):
        return to_float(images)
    src = images if images.device.type == "cpu" or images.is_floating_point() else images.float() / 255.0
    out = F.interpolate(src, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return to_float(out) if out.dtype == torch.uint8 else to_float(out).clamp_(0, 1)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float 0..1 (any memory layout) -> contiguous float32 0..1 in one pass: batches leave
    the data path in the plain layout whatever layout the cache and the resize kernels prefer."""
    if images.is_floating_point():
        return images.to(torch.float32, memory_format=torch.contiguous_format)
    return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def color_jitter(x: torch.Tensor, generator: torch.Generator, p: float = 0.8, strength: float = 0.4,
                 hue: float = 0.1, gray_p: float = 0.2) -> torch.Tensor:
    """SimCLR-style jitter with per-sample factors: brightness, contrast, saturation, hue (kornia), gray."""
    import kornia.enhance as ke

    b, dev = x.shape[0], x.device

    def factor(lo, hi):
        return (lo + (hi - lo) * _rand(b, generator)).to(dev)

    apply = (_rand(b, generator) < p).to(dev)
    one = torch.ones(b, device=dev)
    bright = torch.where(apply, factor(1 - strength, 1 + strength), one)
    contrast = torch.where(apply, factor(1 - strength, 1 + strength), one)
    sat = torch.where(apply, factor(1 - strength, 1 + strength), one)
    hue_shift = torch.where(apply, factor(-hue, hue), torch.zeros_like(one))

    x = (x * bright.view(b, 1, 1, 1)).clamp(0, 1)
    mean = _gray(x).mean(dim=(-2, -1), keepdim=True)
    x = ((x - mean) * contrast.view(b, 1, 1, 1) + mean).clamp(0, 1)
    g = _gray(x)
    x = ((x - g) * sat.view(b, 1, 1, 1) + g).clamp(0, 1)
    x = ke.adjust_hue(x, hue_shift * 2 * math.pi).clamp(0, 1)  # kornia takes the hue shift in radians
    to_gray = (_rand(b, generator) < gray_p).to(dev).view(b, 1, 1, 1)
    return torch.where(to_gray, _gray(x).expand_as(x), x)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
