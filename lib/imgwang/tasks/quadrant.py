"""quadrant: which quarter of its image is this? (the seed's QuadrantDataset, made to learn)

Two formulations, chosen by `mode`:

- "crop" (default): the chosen quadrant is cut out and resized (bilinear) back to the full size; the
  model sees only that zoomed quarter and names where it came from (0 top-left, 1 top-right,
  2 bottom-left, 3 bottom-right). The answer lies in the content: objects are mostly centred, so a
  quarter holds its part of the object towards the image centre, sky at the top, ground at the bottom.
  That is context prediction in the spirit of Doersch et al. (2015) and is the formulation to
  pretrain with: it has no position shortcut, it learns (see the tests), and its signal is semantic.
- "mask": the full image with the other three quadrants set to grey. It learns at once, but through
  a shortcut (where the grey is), so it teaches nothing about images; keep it as a debug mode that
  proves the data/model/loss plumbing works, as the seed log wished it had.

The seed's attempt used a softmax-then-loss head and never overfit a batch; here the head emits raw
logits into cross-entropy, and the test suite checks that one batch is memorised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from .base import register
from .classify import ClassificationTask

MODES = ("crop", "mask")


@register
class Quadrant(ClassificationTask):
    name = "quadrant"
    n_classes = 4

    def __init__(self, *, mode: str = "crop", noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if mode not in MODES:
            raise ConfigError(f"quadrant mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b, _, h, w = images.shape
        if h < 2 or w < 2:
            raise DataError(f"quadrant needs images of at least 2x2 pixels, got {h}x{w}")
        q = torch.randint(0, 4, (b,), generator=generator, device=generator.device).to(images.device)
        boxes = quadrant_boxes(q, h, w)  # (B, 4): top, left, height, width
        if self.mode == "crop":
            inputs = crop_resize(images, boxes[:, 0], boxes[:, 1], (h // 2, w // 2), (h, w))
        else:
            inputs = mask_outside(images, boxes, fill=0.5)
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return inputs, q, {"sources": sources, "boxes": boxes}



def quadrant_boxes(q: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Quadrant index (0 TL, 1 TR, 2 BL, 3 BR) -> (top, left, height, width), all quadrants of equal size."""
    qh, qw = h // 2, w // 2
    top = (q // 2) * (h - qh)  # odd sizes: the bottom/right quadrants end at the border, same size
    left = (q % 2) * (w - qw)
    return torch.stack([top, left, torch.full_like(q, qh), torch.full_like(q, qw)], dim=1)


def crop_resize(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, crop: tuple[int, int],
                size: tuple[int, int]) -> torch.Tensor:
    """Cut a (crop_h, crop_w) box at each image's (top, left) and resize it to `size` (bilinear).

    One gather and one interpolate for the batch; the box size is a Python int pair, so nothing waits
    on the GPU (no per-image Python, no host sync).
    """
    ch, cw = crop
    b = images.shape[0]
    rows = top[:, None] + torch.arange(ch, device=images.device)  # (B, ch)
    cols = left[:, None] + torch.arange(cw, device=images.device)  # (B, cw)
    batch = torch.arange(b, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if (ch, cw) == tuple(size):
        return crops.contiguous()
    return F.interpolate(crops, size=size, mode="bilinear", align_corners=False)  # convex: stays in [0, 1]


def mask_outside(images: torch.Tensor, boxes: torch.Tensor, fill: float) -> torch.Tensor:
    """Keep each image's box, set every other pixel to `fill`."""
    _, _, h, w = images.shape
    ys = torch.arange(h, device=images.device)[None, :, None]
    xs = torch.arange(w, device=images.device)[None, None, :]
    top, left, bh, bw = (boxes[:, i, None, None] for i in range(4))
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)  # (B, H, W)
    return torch.where(inside[:, None], images, torch.full_like(images, fill))
