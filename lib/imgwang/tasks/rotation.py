"""rotation: predict by how many quarter turns an image was rotated (Gidaris et al., 2018).

Each image is rotated by k * 90 degrees, k uniform in 0..3, and the model classifies k (4-way
cross-entropy, chance 0.25). Solving it needs the "up" of objects, skies and horizons, which is
what makes rotation a cheap but honest baseline beside the hand-made tasks.
"""

from __future__ import annotations

import torch

from ..core.errors import DataError
from .base import register
from .classification import ClassificationTask


@register
class Rotation(ClassificationTask):
    name = "rotation"
    n_classes = 4
    forbids_augment = {"rotations": "the rotation task's labels are the rotation itself"}

    def __init__(self, *, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b, _, h, w = images.shape
        if h != w:
            raise DataError(f"rotation needs square images (a quarter turn must keep the shape), got {h}x{w}")
        k = torch.randint(0, 4, (b,), generator=generator, device=generator.device).to(images.device)
        inputs = images
        for quarter_turns in (1, 2, 3):  # whole-batch rot90 + select: no host sync (nonzero would wait on the GPU)
            chosen = (k == quarter_turns).view(b, 1, 1, 1)
            inputs = torch.where(chosen, torch.rot90(images, quarter_turns, dims=(2, 3)), inputs)
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return inputs, k, {"sources": sources, "quarter_turns": k}


