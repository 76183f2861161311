"""SwAV's model (Caron et al., 2020; facebookresearch/swav): encoder -> lightly's SwaVProjectionHead ->
L2-normalised z -> bias-free prototypes (heads.Prototypes), with the optional queue of earlier large views.
The task (tasks/swav.py) freezes the prototypes and starts the queue; the loss is lightly's SwaVLoss.

As SwAV's `forward` / `forward_head` (src/resnet50.py): one encoder pass per crop resolution, then the
features of every crop concatenated and the head run once, so its BatchNorm sees large and small crops
together. The prototype scores are computed in float32 with autocast off: Sinkhorn divides them by epsilon
(0.03-0.05) and the loss by the temperature, where bf16's rounding would be several percent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.models.modules import SwaVProjectionHead
from torch import nn

from ..data.views import same_size_runs
from .heads import AdaptiveConcatPool2d, Prototypes

POOLS = ("avg", "catavgmax")  # the encoder's average pooling; fastai's average and max side by side (2x wide)


def encode_crops(encoder: nn.Module, views, pool: str = "avg") -> torch.Tensor:
    """Pooled backbone features of every view, one encoder pass per resolution, concatenated in view order."""
    if pool == "catavgmax":
        return torch.cat([AdaptiveConcatPool2d()(encoder.forward_features(torch.cat(g))) for g in same_size_runs(views)])
    return torch.cat([encoder(torch.cat(group)) for group in same_size_runs(views)])


def full_precision(x: torch.Tensor):
    """(x in float32, a context with autocast off on x's device) for the layers that must not round."""
    return x.float(), torch.autocast(x.device.type, enabled=False)


class SwaVModel(nn.Module):
    """Returns (projections, scores, queue_scores): one normalised z and one prototype-score tensor per view,
    and the prototype scores of the queued projections of each large view (empty while the queue fills, in
    eval mode and without a queue)."""

    def __init__(self, encoder: nn.Module, proj_dim: int, n_prototypes: int, queue_size: int = 0,
                 hidden_dim: int = 2048, pool: str = "avg"):
        super().__init__()
        self.encoder, self.pool = encoder, pool
        width = encoder.num_features * (2 if pool == "catavgmax" else 1)
        self.projector = SwaVProjectionHead(width, hidden_dim, proj_dim)
        self.prototypes = Prototypes(proj_dim, n_prototypes)
        self.queue_size = int(queue_size)
        self.queue_active = True  # the task switches it per epoch (queue_start)
        if self.queue_size:
            self.register_buffer("queue", torch.zeros(2, self.queue_size, proj_dim))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
            self.register_load_state_dict_post_hook(SwaVModel._read_fill)
        self._filled = 0  # host copy of queue_filled: asking the device "is it full?" would wait on a GPU

    def forward(self, views, *more_views):
        views = (views, *more_views) if more_views else tuple(views)
        if self.training:
            self.prototypes.normalize()  # SwAV keeps prototypes on the unit sphere before every step
        h = self.projector(encode_crops(self.encoder, views, self.pool))  # one head call: its BatchNorm sees every crop
        h, exact = full_precision(h)
        with exact:
            z = F.normalize(h, dim=1)
            projections = z.chunk(len(views))
            scores = self.prototypes(z).chunk(len(views))
            queue_scores = ()
            if self.training and self.queue_size and self.queue_active:
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
