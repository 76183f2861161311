"""rotation: predict by how many quarter turns an image was rotated (Gidaris et al., 2018).

Each image is rotated by k * 90 degrees, k uniform in 0..3, and the model classifies k (4-way
cross-entropy, chance 0.25). Solving it needs the "up" of objects, skies and horizons, which is
what makes rotation a cheap but honest baseline beside the hand-made tasks.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .base import Task, register


@register
class Rotation(Task):
    name = "rotation"
    metric_name = "accuracy"
    chance = 0.25
    n_classes = 4

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

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return classifier_model(encoder, self.n_classes)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def metric(self, outputs, targets):
        return (outputs.argmax(dim=1) == targets).float().mean()


def classifier_model(encoder: nn.Module, n_outputs: int, **head_options) -> nn.Module:
    """encoder -> pooled features -> MLP head -> (B, n_outputs) logits; `model.encoder` is what transfers."""
    from ..models.heads import MLPHead  # imported here so registering tasks never needs the models

    return nn.Sequential(OrderedDict(encoder=encoder, head=MLPHead(encoder.num_features, n_outputs, **head_options)))
