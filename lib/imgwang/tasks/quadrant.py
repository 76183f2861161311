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

from ..core.errors import ConfigError, DataError
from .base import register
from .boxes import crop_resize, mask_outside, quadrant_boxes
from .classification import ClassificationTask

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
