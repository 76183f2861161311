"""What the view-making tasks share (simclr, swav, dino, byol): the batch of views, their option checks, and
the pair-accuracy metric. Each image gives several views (data/views.py); the target of an image's views is
its own batch row."""

from __future__ import annotations

import torch

from ..core.errors import ConfigError
from ..data.views import MakesViews
from ..distributed.gather import global_rows
from .base import Task

DINO_COLOUR = dict(jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2)  # DINO's and BYOL's colour jitter


class ViewTask(MakesViews, Task):
    """make_batch -> (views, batch rows, sources); `chance` follows the largest batch made (pair accuracy by
    default): the configured batch, whatever size the loader's last batch has."""

    metric_name = "pair_accuracy"
    chance = float("nan")  # known once a batch size is seen
    needs_two = ""  # why the task needs two images in a batch, for the error
    min_batch = 2
    largest_batch = 0  # global rows of the largest batch made: the configured batch, not a short last one

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b = images.shape[0]
        if b < 2:
            raise ConfigError(f"{self.name} needs a batch of at least 2 images ({self.needs_two})")
        views = self.make_views(images, generator)
        self.largest_batch = max(self.largest_batch, global_rows(b))
        self.chance = self.chance_at(self.largest_batch)
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return views, torch.arange(b, device=images.device), {"sources": sources}

    def chance_over(self, batch_sizes) -> float:
        """Rows-weighted over the batches: a val set smaller than one batch has a higher chance than training's."""
        return sum(b * self.chance_at(b) for b in batch_sizes) / sum(batch_sizes)

    def chance_at(self, b: int) -> float:
        """Pair accuracy's for a global batch of b: a model that learned nothing picks one of the other 2b - 1 views."""
        return 1.0 / (2 * b - 1)


def check_colour(task: str, jitter: float, jitter_p: float, gray_p: float, blur_p: float) -> None:
    if jitter < 0:
        raise ConfigError(f"{task} jitter strength must be >= 0, got {jitter}")
    for name, p in (("jitter_p", jitter_p), ("gray_p", gray_p), ("blur_p", blur_p)):
        if not 0 <= p <= 1:
            raise ConfigError(f"{task} {name} is a probability in [0, 1], got {p}")


def check_small_crops(task: str, kind: str, count: int, fraction: float) -> None:
    """Multi-crop's smaller views (swav's "small", dino's "local"): how many, and their side as a fraction of SIZE."""
    if count < 0:
        raise ConfigError(f"{task} n_{kind}_crops must be >= 0, got {count}")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"{task} {kind}_fraction ({kind} crop side / SIZE) must be in (0, 1], got {fraction}")


def check_scale(task: str, name: str, lo: float, hi: float) -> None:
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"{task} {name} (crop area fractions of the whole image) must satisfy 0 < min <= max <= 1, "
                          f"got {lo}-{hi}")


def pair_accuracy(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Fraction of the 2B views whose most cosine-similar other view is their partner (row i <-> row i);
    under torchrun the other views are every rank's (models.losses.global_views)."""
    from ..models.losses import global_views

    anchors, candidates, own, partner = global_views(z0.float(), z1.float())
    sim = (anchors @ candidates.T).masked_fill(own, float("-inf"))  # a view is not its own partner
    return (sim.argmax(dim=1) == partner).float().mean()
