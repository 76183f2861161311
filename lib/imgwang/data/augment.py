"""Batched per-sample augmentation on the device: uint8 cache rows (or float images in [0, 1]) in, float
images in [0, 1] out. The loader uses it on cache rows; the view-making tasks (simclr, swav, dino, byol,
patchwork) make their views with it, from the whole stored image.

`make_augment(size, mode)` returns a callable `augment(images, generator) -> float`:
  "pretrain" / "train": RandomResizedCrop (torchvision's sampling rule, parameters drawn per sample,
                        vectorised) + horizontal flip, then optionally, in this order: colour jitter with
                        probability `jitter_p` (`jitter`: SimCLR's strength s, i.e. brightness, contrast and
                        saturation 0.8 s, hue 0.2 s, or four explicit maxima), grayscale (`gray_p`),
                        Gaussian blur (`blur_p`, sigma uniform in `blur_sigma`, kernel `blur_kernel` x the
                        output side as SimCLR's data_util: radius = int(side * 0.1) // 2, reflect padding
                        where SimCLR pads with zeros), solarize (`solarize_p`, BYOL's: pixels >= 0.5 invert);
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

from ..core.device import torch_threads
from ..core.errors import ConfigError, DataError
from ..core.threads import budget

MODES = ("pretrain", "train", "eval")
METHODS = ("auto", "loop", "roi")


def make_augment(size: int, mode: str, scale=(0.35, 1.0), *, ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter=0.0, method: str = "auto", **colour) -> "Augment":
    """Build the augmentation for a stage; see the module docstring for the modes. `colour`: jitter_p,
    gray_p, blur_p, blur_sigma, blur_kernel, solarize_p; `shared_zoom=True` gives every crop of a batch one
    (area, aspect), positions per sample."""
    return Augment(size, mode, scale=scale, ratio=ratio, flip_p=flip_p, jitter=jitter, method=method, **colour)


def jitter_maxima(jitter) -> tuple[float, float, float, float]:
    """(brightness, contrast, saturation, hue) maxima from SimCLR's strength s or four explicit values."""
    if isinstance(jitter, (tuple, list)):
        if len(jitter) != 4:
            raise ConfigError(f"colour jitter needs 4 maxima (brightness, contrast, saturation, hue), got {jitter}")
        values = tuple(float(v) for v in jitter)
    else:
        s = float(jitter)
        values = (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    if not all(v >= 0 for v in values) or values[3] > 0.5:
        raise ConfigError(f"colour jitter strength must be >= 0 (0 = none) with hue at most 0.5, got {jitter}")
    return values


class Augment:
    def __init__(self, size: int, mode: str, *, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter=0.0, method: str = "auto", jitter_p: float = 0.8, gray_p: float = 0.0, blur_p: float = 0.0,
                 blur_sigma=(0.1, 2.0), blur_kernel: float = 0.1, solarize_p: float = 0.0, shared_zoom: bool = False):
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
        self.jitter = jitter_maxima(jitter)
        for name, p in (("jitter_p", jitter_p), ("gray_p", gray_p), ("blur_p", blur_p), ("solarize_p", solarize_p)):
            if not 0 <= p <= 1:
                raise ConfigError(f"{name} is a probability in [0, 1], got {p}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ConfigError(f"blur sigma range must satisfy 0 < min <= max, got {tuple(blur_sigma)}")
        if not 0 < blur_kernel < 1:
            raise ConfigError(f"blur kernel (fraction of the side) must be in (0, 1), got {blur_kernel}")
        self.size, self.mode, self.method = int(size), mode, method
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.flip_p, self.shared_zoom = float(flip_p), bool(shared_zoom)
        self.jitter_p, self.gray_p, self.blur_p, self.solarize_p = float(jitter_p), float(gray_p), float(blur_p), float(solarize_p)
        self.blur_sigma, self.blur_kernel = (float(blur_sigma[0]), float(blur_sigma[1])), float(blur_kernel)
        self.blur_radius = int(self.size * self.blur_kernel) // 2  # SimCLR: kernel_size = side // 10, radius = k // 2

    def __repr__(self) -> str:
        return (f"Augment(size={self.size}, mode={self.mode!r}, scale={self.scale}, flip_p={self.flip_p}, "
                f"jitter={self.jitter} p {self.jitter_p}, gray_p={self.gray_p}, blur_p={self.blur_p}, "
                f"solarize_p={self.solarize_p}, method={self.method!r})")

    @property
    def colour(self) -> bool:
        return any(self.jitter) or self.gray_p > 0 or self.blur_p > 0 or self.solarize_p > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not (images.dtype == torch.uint8 or images.is_floating_point()) or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"augment expects uint8 or float images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if self.mode != "eval" and generator is None:
            raise ConfigError(f"mode {self.mode!r} is random: pass a torch.Generator so runs are reproducible")
        # One image per kernel on the CPU: a thread team per tiny kernel costs more than it saves.
        with torch_threads(1) if images.device.type == "cpu" else contextlib.nullcontext():
            out = self._crop(images, generator)
        if self.colour and self.mode != "eval":  # whole-batch kernels: here the caller's threads pay off (1.6x)
            if any(self.jitter):
                b, c, s, h = self.jitter
                out = color_jitter(out, generator, p=self.jitter_p, brightness=b, contrast=c, saturation=s, hue=h,
                                   gray_p=self.gray_p)
            elif self.gray_p > 0:
                out = random_grayscale(out, generator, self.gray_p)
            if self.blur_p > 0 and self.blur_radius > 0:
                out = random_gaussian_blur(out, generator, self.blur_p, self.blur_sigma, self.blur_radius)
            if self.solarize_p > 0:
                out = random_solarize(out, generator, self.solarize_p)
        return out

    def _crop(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.mode == "eval":
            return resize(images, self.size)
        b, _, h, w = images.shape
        boxes = sample_crop_boxes(b, h, w, self.scale, self.ratio, generator, shared_size=self.shared_zoom).to(images.device)
        flips = (_rand(b, generator) < self.flip_p).to(images.device)
        method = self.method if self.method != "auto" else ("loop" if images.device.type == "cpu" else "roi")
        crop = crop_resize_loop if method == "loop" else crop_resize_roi
        return crop(images, boxes, flips, self.size)


def _rand(shape, generator: torch.Generator) -> torch.Tensor:
    shape = (shape,) if isinstance(shape, int) else shape
    return torch.rand(shape, generator=generator, device=generator.device)


def sample_crop_boxes(n: int, h: int, w: int, scale, ratio, generator, tries: int = 10,
                      shared_size: bool = False) -> torch.Tensor:
    """(n, 4) long boxes (x0, y0, width, height), torchvision's RandomResizedCrop rule drawn for all at once.

    Up to `tries` (area, aspect) draws per sample; the first that fits wins; samples where none fit get
    the centre crop with the aspect ratio clamped into range, as torchvision does. `shared_size`: one
    (area, aspect) draw for the whole batch, positions per sample: every crop has the same zoom.
    """
    area = h * w
    rows = 1 if shared_size else n
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand((rows, tries), generator)).expand(n, tries)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand((rows, tries), generator)).expand(n, tries)
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


def color_jitter(x: torch.Tensor, generator: torch.Generator, p: float = 0.8, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1, gray_p: float = 0.2) -> torch.Tensor:
    """SimCLR-style jitter with per-sample factors: brightness (multiplicative, SimCLR v2's), contrast,
    saturation, hue (kornia), each applied to a sample with probability p; then grayscale with gray_p.
    The four are applied in this fixed order (SimCLR shuffles the order per image)."""
    import kornia.enhance as ke

    b, dev = x.shape[0], x.device

    def factor(lo, hi):
        return (lo + (hi - lo) * _rand(b, generator)).to(dev)

    apply = (_rand(b, generator) < p).to(dev)
    one = torch.ones(b, device=dev)
    bright = torch.where(apply, factor(max(0.0, 1 - brightness), 1 + brightness), one)
    contrast = torch.where(apply, factor(max(0.0, 1 - contrast), 1 + contrast), one)
    sat = torch.where(apply, factor(max(0.0, 1 - saturation), 1 + saturation), one)
    hue_shift = torch.where(apply, factor(-hue, hue), torch.zeros_like(one))

    x = (x * bright.view(b, 1, 1, 1)).clamp(0, 1)
    mean = _gray(x).mean(dim=(-2, -1), keepdim=True)
    x = ((x - mean) * contrast.view(b, 1, 1, 1) + mean).clamp(0, 1)
    g = _gray(x)
    x = ((x - g) * sat.view(b, 1, 1, 1) + g).clamp(0, 1)
    x = ke.adjust_hue(x, hue_shift * 2 * math.pi).clamp(0, 1)  # kornia takes the hue shift in radians
    return random_grayscale(x, generator, gray_p)


def random_grayscale(x: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    to_gray = (_rand(x.shape[0], generator) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(to_gray, _gray(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (B,), kernel 2 * radius + 1, reflect padding.

    Each direction is one batched matrix product with a per-sample band matrix (the kernel with the
    reflected border folded in): the same few kernels for any batch, fast on a CPU and a GPU alike, where
    a grouped convolution with one group per sample and channel ran ~50x slower on the CPU."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-t.square() / (2 * sigma.to(x.dtype).view(b, 1).square()))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    rows = _band(kernel, h)  # (B, h, h): out = rows @ x @ cols^T
    cols = rows if w == h else _band(kernel, w)
    return rows.unsqueeze(1) @ x @ cols.transpose(1, 2).unsqueeze(1)


def _band(kernel: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n, n) matrices M with (M @ v)[i] = sum_k kernel[k] * v[reflect(i + k - r)]."""
    b, k = kernel.shape
    r = k // 2
    pos = torch.arange(n, device=kernel.device)[:, None] + torch.arange(-r, r + 1, device=kernel.device)[None, :]
    pos = pos.abs()  # reflect at 0 (edge pixel not repeated, as F.pad's "reflect")
    pos = torch.where(pos > n - 1, 2 * (n - 1) - pos, pos)  # reflect at n - 1
    band = torch.zeros(b, n, n, device=kernel.device, dtype=kernel.dtype)
    return band.scatter_add_(2, pos.expand(b, n, k), kernel[:, None, :].expand(b, n, k))


def random_gaussian_blur(x: torch.Tensor, generator: torch.Generator, p: float, sigma_range, radius: int) -> torch.Tensor:
    b = x.shape[0]
    sigma = (sigma_range[0] + (sigma_range[1] - sigma_range[0]) * _rand(b, generator)).to(x.device)
    apply = (_rand(b, generator) < p).to(x.device).view(b, 1, 1, 1)
    return torch.where(apply, gaussian_blur(x, sigma, radius).clamp(0, 1), x)


def random_solarize(x: torch.Tensor, generator: torch.Generator, p: float, threshold: float = 0.5) -> torch.Tensor:
    apply = (_rand(x.shape[0], generator) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(apply & (x >= threshold), 1 - x, x)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
