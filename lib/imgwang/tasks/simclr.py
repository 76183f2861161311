"""simclr: two augmented views of each image must find each other among the batch (Chen et al., 2020).

Views are made on the device, per sample and batched, by the data path's own augmentation (random
resized crop, horizontal flip, colour jitter, random grayscale; no blur, as in SimCLR's small-image
setting): no host round trip per batch, which a GPU step cannot afford. The model is encoder ->
projection head (lightly's SimCLRProjectionHead) -> z, trained with NT-Xent (models/losses.py, checked
against lightly's).

Metric "pair_accuracy": for each of the 2B views, is its nearest other view (cosine similarity) its
partner? A model that learned nothing picks one of the 2B - 1 others at random, so the chance level is
1 / (2B - 1) for the batch size B last seen (`chance` updates with every make_batch).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.augment import Augment, make_augment
from ..distributed.gather import global_rows
from ..errors import ConfigError
from .base import Task, register


def view_augmentation(size: int, min_scale: float, jitter: float, max_scale: float = 1.0) -> Augment:
    """SimCLR's view recipe: random resized crop, horizontal flip, colour jitter (p 0.8) and grayscale
    (p 0.2), every sample with its own parameters drawn from the task's generator on the images' device."""
    return make_augment(size, "pretrain", scale=(min_scale, max_scale), jitter=jitter)


def make_views(augment: Augment, images: torch.Tensor, generator: torch.Generator, n_views: int):
    """`n_views` independent views of every image, deterministic given `generator`."""
    return tuple(augment(images, generator) for _ in range(n_views))


def pair_accuracy(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Fraction of the 2B views whose most cosine-similar other view is their partner (row i <-> row i);
    under torchrun the other views are every rank's (models.losses.global_views)."""
    from ..models.losses import global_views

    anchors, candidates, own, partner = global_views(z0.float(), z1.float())
    sim = (anchors @ candidates.T).masked_fill(own, float("-inf"))  # a view is not its own partner
    return (sim.argmax(dim=1) == partner).float().mean()


class TwoViewModel(nn.Module):
    """encoder -> projector applied to every view in one pass; returns one projection per view."""

    def __init__(self, encoder: nn.Module, projector: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, views, *more_views):
        views = (views, *more_views) if more_views else tuple(views)
        z = self.projector(self.encoder(torch.cat(views)))
        return tuple(z.chunk(len(views)))


@register
class SimCLR(Task):
    name = "simclr"
    metric_name = "pair_accuracy"

    def __init__(self, *, temperature: float = 0.2, min_scale: float = 0.2, jitter: float = 0.5,
                 proj_dim: int = 128, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if temperature <= 0:
            raise ConfigError(f"simclr temperature must be > 0, got {temperature}")
        if not 0.0 < min_scale <= 1.0:
            raise ConfigError(f"simclr min_scale (smallest crop area fraction) must be in (0, 1], got {min_scale}")
        if jitter < 0:
            raise ConfigError(f"simclr jitter strength must be >= 0, got {jitter}")
        self.temperature, self.min_scale, self.jitter, self.proj_dim = temperature, min_scale, jitter, int(proj_dim)
        self.chance = float("nan")  # known once a batch size is seen
        self._augment = None

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b, _, h, w = images.shape
        if b < 2:
            raise ConfigError("simclr needs a batch of at least 2 images (the other images are the negatives)")
        if self._augment is None or self._augment.size != min(h, w):
            self._augment = view_augmentation(min(h, w), self.min_scale, self.jitter)
        views = make_views(self._augment, images, generator, 2)
        self.chance = 1.0 / (2 * global_rows(b) - 1)  # the negatives of every rank count
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return views, torch.arange(b, device=images.device), {"sources": sources}

    def build_model(self, encoder: nn.Module) -> nn.Module:
        from ..models.heads import ProjectionHead

        return TwoViewModel(encoder, ProjectionHead(encoder.num_features, self.proj_dim))

    def loss(self, outputs, targets):
        from ..models.losses import nt_xent_loss

        z0, z1 = outputs
        return nt_xent_loss(z0.float(), z1.float(), self.temperature)

    def metric(self, outputs, targets):
        return pair_accuracy(outputs[0], outputs[1])
