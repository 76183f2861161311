"""simclr: two augmented views of each image must find each other among the batch (Chen et al., 2020,
"A Simple Framework for Contrastive Learning of Visual Representations").

Views: SimCLR's ImageNet recipe (google-research/simclr, data_util.py), each view cropped once from the
whole stored image (see data/views.py), per sample and batched on the device:
  - random resized crop, area 0.08-1 of the image (`min_scale`), aspect 3/4-4/3, resized to SIZE;
  - horizontal flip, p 0.5;
  - colour jitter with p 0.8 (`jitter_p`), strength s = 1 (`jitter`): brightness, contrast, saturation 0.8 s,
    hue 0.2 s; then grayscale, p 0.2 (`gray_p`);
  - Gaussian blur, p 0.5 (`blur_p`), sigma uniform in 0.1-2.0, kernel 10 % of the view side.
Where we differ: the jitter's four operations run in a fixed order (SimCLR shuffles it per image), the
blur pads by reflection (SimCLR: zeros), crops are resampled bilinearly (SimCLR: bicubic), and temperature
is 0.2 (SimCLR: 0.1 at batch 4096, 0.5 on CIFAR) as a middle value for the small batches run here.
The small-image (CIFAR-10) parameter set of the paper: `P="-p jitter 0.5 -p blur_p 0"` (same crops).

The model is encoder -> projection head (lightly's SimCLRProjectionHead, 2048 -> 128) -> z, trained with
NT-Xent (models/losses.py, checked against lightly's).

Metric "pair_accuracy": for each of the 2B views, is its nearest other view (cosine similarity) its
partner? A model that learned nothing picks one of the 2B - 1 others at random, so the chance level is
1 / (2B - 1), B the largest batch made (the configured one; `chance` updates with every make_batch).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from .base import register
from .multiview import ViewTask, check_colour, check_scale, pair_accuracy


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
class SimCLR(ViewTask):
    name = "simclr"
    needs_two = "the other images are the negatives"

    def __init__(self, *, temperature: float = 0.2, min_scale: float = 0.08, jitter: float = 1.0,
                 jitter_p: float = 0.8, gray_p: float = 0.2, blur_p: float = 0.5, proj_dim: int = 128,
                 noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if temperature <= 0:
            raise ConfigError(f"simclr temperature must be > 0, got {temperature}")
        check_scale("simclr", "min_scale", min_scale, 1.0)
        check_colour("simclr", jitter, jitter_p, gray_p, blur_p)
        self.temperature, self.min_scale, self.proj_dim = temperature, min_scale, int(proj_dim)
        self.colour = dict(jitter=jitter, jitter_p=jitter_p, gray_p=gray_p, blur_p=blur_p)

    def view_kinds(self, side: int):
        return [(2, make_augment(side, "pretrain", scale=(self.min_scale, 1.0), **self.colour))]

    def build_model(self, encoder: nn.Module) -> nn.Module:
        from ..models.heads import projection_head

        return TwoViewModel(encoder, projection_head(encoder.num_features, self.proj_dim))

    def loss(self, outputs, targets):
        from ..models.losses import nt_xent_loss

        z0, z1 = outputs
        return nt_xent_loss(z0.float(), z1.float(), self.temperature)

    def metric(self, outputs, targets):
        return pair_accuracy(outputs[0], outputs[1])

    def embeddings(self, outputs):
        return outputs[0]  # the first view's projection z, where NT-Xent acts
