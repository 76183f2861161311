"""scale: how far was this image zoomed in? (the seed's ScaleDataset, its classification mode)

Each image is zoomed by one of `scales` (default 1, 1.5, 2, 3): a square box of side round(S / s)
is cut out (at the centre, or anywhere with `crop="random"`) and resized back to S x S; the model
classifies which scale was used (cross-entropy over len(scales), chance 1 / len(scales)).
To answer, a model must know how big things usually are (a dog's eye filling the frame means a
large zoom), plus how blurred the upsampling left the texture, which is the known shortcut of this
task: compare transfer results against rotation before trusting it.

The seed found this the one task that learned; its regression variant failed through loss misuse,
so only the classification form is offered.
"""

from __future__ import annotations

import torch

from ..core.errors import ConfigError, DataError
from .base import register
from .boxes import crop_resize
from .classification import ClassificationTask

CROPS = ("center", "random")


@register
class Scale(ClassificationTask):
    name = "scale"

    def __init__(self, *, scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0), crop: str = "center", noise_p: float = 0.0):
        scales = tuple(float(s) for s in scales)
        if len(scales) < 2 or len(set(scales)) != len(scales) or min(scales) < 1.0:
            raise ConfigError(f"scale needs at least two distinct zoom factors >= 1, got {scales}")
        if crop not in CROPS:
            raise ConfigError(f"scale crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.scales = scales
        self.crop = crop
        self.n_classes = len(scales)
        super().__init__(noise_p=noise_p)  # after n_classes: chance is 1 / n_classes

    def box_sides(self, h: int, w: int) -> list[tuple[int, int]]:
        """(height, width) of the box cut for each scale; distinct sides so every class is visible."""
        sides = [(max(1, round(h / s)), max(1, round(w / s))) for s in self.scales]
        if len(set(sides)) != len(sides):
            raise DataError(f"images of {h}x{w} px are too small to tell scales {self.scales} apart")
        return sides

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b, _, h, w = images.shape
        sides = self.box_sides(h, w)
        gdev = generator.device
        label = torch.randint(0, len(self.scales), (b,), generator=generator, device=gdev).to(images.device)
        position = torch.rand(b, 2, generator=generator, device=gdev).to(images.device)  # drawn in both modes: same stream
        inputs, boxes = images, torch.zeros(b, 4, dtype=torch.long, device=images.device)
        for i, (side_h, side_w) in enumerate(sides):  # every scale on the whole batch, then select: no host sync
            if self.crop == "center":
                top = torch.full((b,), (h - side_h) // 2, device=images.device)
                left = torch.full((b,), (w - side_w) // 2, device=images.device)
            else:
                top = (position[:, 0] * (h - side_h + 1)).long().clamp(max=h - side_h)
                left = (position[:, 1] * (w - side_w + 1)).long().clamp(max=w - side_w)
            chosen = label == i
            zoomed = crop_resize(images, top, left, (side_h, side_w), (h, w))
            inputs = torch.where(chosen[:, None, None, None], zoomed, inputs)
            box = torch.stack([top, left, torch.full_like(top, side_h), torch.full_like(top, side_w)], dim=1)
            boxes = torch.where(chosen[:, None], box, boxes)
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return inputs, label, {"sources": sources, "boxes": boxes}

