"""swav: swapped prediction of online cluster codes between views (Caron et al., 2020).

Each image gives two full-size views (SimCLR's recipe, see simclr.py) and optionally `n_small_crops` extra
low-resolution views (off by default: they pay off on long GPU runs, not in quick CPU ones). The model
is encoder -> lightly's SwaVProjectionHead -> L2-normalised z -> SwaVPrototypes -> prototype scores;
lightly's SwaVLoss computes each full view's codes with Sinkhorn and makes every other view predict
them. Prototypes are renormalised to the unit sphere at the start of every training-mode forward, so
the training loop needs no SwAV-specific hook.

Small batches: Sinkhorn spreads each batch evenly over the prototypes, which is a coarse constraint when a
batch holds fewer images than there are prototypes. `queue_size` > 0 keeps the projections of the last
`queue_size` full views of each kind (a FIFO in the model's buffers, so checkpoints and resumes keep it);
once it is full, the codes of each batch are computed together with the queue's (as in SwAV's queue for
batches under 1,000 images), and only the batch's codes are kept.

Metric "pair_accuracy" (as simclr): for each of the 2B full views, is its most cosine-similar other
view's projection its partner? Chance is 1 / (2B - 1) for the batch size B last seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from torch import nn

from ..distributed.gather import gathering, global_rows
from ..errors import ConfigError
from .base import Task, register
from .simclr import make_views, pair_accuracy, view_augmentation


class SwaVModel(nn.Module):
    """Returns (projections, scores, queue_scores): one normalised z and one prototype-score tensor per view,
    and the prototype scores of the queued projections of each full view (empty while the queue fills, in
    eval mode and without a queue)."""

    def __init__(self, encoder: nn.Module, proj_dim: int, n_prototypes: int, queue_size: int = 0):
        super().__init__()
        self.encoder = encoder
        self.projector = SwaVProjectionHead(encoder.num_features, 2048, proj_dim)
        self.prototypes = SwaVPrototypes(proj_dim, n_prototypes)
        self.queue_size = int(queue_size)
        if self.queue_size:
            self.register_buffer("queue", torch.zeros(2, self.queue_size, proj_dim))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
            self.register_load_state_dict_post_hook(SwaVModel._read_fill)
        self._filled = 0  # host copy of queue_filled: asking the device "is it full?" would wait on a GPU

    def forward(self, views, *more_views):
        views = (views, *more_views) if more_views else tuple(views)
        if self.training:
            self.prototypes.normalize()  # SwAV keeps prototypes on the unit sphere after every step
        projections = []
        for group in _same_size_runs(views):  # one encoder pass per resolution
            z = F.normalize(self.projector(self.encoder(torch.cat(group))), dim=1)
            projections.extend(z.chunk(len(group)))
        scores = [self.prototypes(z) for z in projections]
        queue_scores = ()
        if self.training and self.queue_size:
            if self._filled >= self.queue_size:
                with torch.no_grad():  # the current prototypes on earlier batches' projections
                    queue_scores = tuple(self.prototypes(q) for q in self.queue)
            self._push(projections[:2])
        return tuple(projections), tuple(scores), queue_scores

    @torch.no_grad()
    def _push(self, projections) -> None:
        """Newest first: the batch's projections go to the front, the oldest fall off the end."""
        for i, z in enumerate(projections):
            self.queue[i] = torch.cat([z.detach().float(), self.queue[i]])[: self.queue_size]
        self._filled = min(self.queue_size, self._filled + len(projections[0]))
        self.queue_filled.fill_(self._filled)

    @staticmethod
    def _read_fill(module, incompatible_keys) -> None:
        module._filled = int(module.queue_filled)  # once per load, not per step


def _same_size_runs(views):
    """Split consecutive views into runs of one spatial size (full views first, then small crops)."""
    runs = []
    for v in views:
        if runs and runs[-1][0].shape[-2:] == v.shape[-2:]:
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


@register
class SwAV(Task):
    name = "swav"
    metric_name = "pair_accuracy"

    def __init__(self, *, n_prototypes: int = 512, temperature: float = 0.1, n_small_crops: int = 0,
                 small_fraction: float = 0.45, min_scale: float = 0.2, jitter: float = 0.5,
                 proj_dim: int = 128, queue_size: int = 0, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if n_prototypes < 2:
            raise ConfigError(f"swav needs at least 2 prototypes, got {n_prototypes}")
        if temperature <= 0:
            raise ConfigError(f"swav temperature must be > 0, got {temperature}")
        if n_small_crops < 0:
            raise ConfigError(f"swav n_small_crops must be >= 0, got {n_small_crops}")
        if not 0.0 < small_fraction < 1.0:
            raise ConfigError(f"swav small_fraction (small crop side / image side) must be in (0, 1), got {small_fraction}")
        if queue_size < 0:
            raise ConfigError(f"swav queue_size (queued projections per view, 0 = no queue) must be >= 0, got {queue_size}")
        if not 0.0 < min_scale <= 1.0:
            raise ConfigError(f"swav min_scale (smallest crop area fraction) must be in (0, 1], got {min_scale}")
        self.n_prototypes, self.temperature = int(n_prototypes), float(temperature)
        self.n_small_crops, self.small_fraction = int(n_small_crops), float(small_fraction)
        self.min_scale, self.jitter, self.proj_dim, self.queue_size = min_scale, jitter, int(proj_dim), int(queue_size)
        self._criterion = SwaVLoss(temperature=self.temperature)
        self.chance = float("nan")  # known once a batch size is seen
        self._augments = None

    def _build_augments(self, h: int, w: int):
        side = min(h, w)
        full = view_augmentation(side, self.min_scale, self.jitter)
        small_size = max(4, round(side * self.small_fraction))
        # As in SwAV (full crops 14-100 % of the area, small 5-14 %): small crops take the areas below min_scale.
        small = view_augmentation(small_size, min(0.05, self.min_scale), self.jitter, max_scale=self.min_scale)
        return (h, w), full, small if self.n_small_crops else None

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b, _, h, w = images.shape
        if b < 2:
            raise ConfigError("swav needs a batch of at least 2 images (codes are balanced across the batch)")
        if self._augments is None or self._augments[0] != (h, w):
            self._augments = self._build_augments(h, w)
        _, full, small = self._augments
        views = make_views(full, images, generator, 2)
        if self.n_small_crops:
            views = views + make_views(small, images, generator, self.n_small_crops)
        self.chance = 1.0 / (2 * global_rows(b) - 1)  # the views of every rank count
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return views, torch.arange(b, device=images.device), {"sources": sources}

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return SwaVModel(encoder, self.proj_dim, self.n_prototypes, self.queue_size)

    def loss(self, outputs, targets):
        scores = [s.float() for s in outputs[1]]  # Sinkhorn's exp(score / 0.05) needs float32 under amp
        queued = [s.float() for s in outputs[2]] if len(outputs) > 2 else []
        self._criterion.sinkhorn_gather_distributed = gathering()  # under torchrun: Sinkhorn's sums over all ranks
        return self._criterion(scores[:2], scores[2:], queued or None).reshape(())  # lightly returns shape (1,)

    def metric(self, outputs, targets):
        projections = outputs[0]
        return pair_accuracy(projections[0], projections[1])
