"""DINO's student and EMA teacher (Caron et al., 2021; facebookresearch/dino): encoder -> lightly's
DINOProjectionHead for both, the teacher's centre as a buffer, the student's last layer freezable. The task
(tasks/dino.py) schedules the temperatures and momentum; the loss is models/losses.py `dino_loss`.

As DINO's `utils.MultiCropWrapper`: one encoder pass per crop resolution, the features of every crop
concatenated and the head run once, so its BatchNorm sees global and local crops together. The head's
L2-normalisation and weight-normalised last layer run in float32 with autocast off: the loss divides their
output by temperatures of 0.04-0.1, where bf16's rounding would be several percent."""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

from .losses import update_center
from .swav import encode_crops, full_precision


class DINOModel(nn.Module):
    """Returns (teacher_out, student_out, center, embeddings): the teacher's logits of the 2 global views, the
    student's of every view, the centre the loss must use (the one before this forward's update), and the
    student's L2-normalised bottleneck of the first global view (what the collapse monitor measures)."""

    def __init__(self, encoder: nn.Module, out_dim: int, center_momentum: float, batch_norm: bool = True,
                 norm_last_layer: bool = True):
        super().__init__()
        self.encoder = encoder
        self.head, self.teacher_head = (_head(encoder.num_features, out_dim, batch_norm, norm_last_layer)
                                        for _ in range(2))
        self.teacher_encoder = copy.deepcopy(encoder)  # the teacher starts as the student
        self.teacher_head.load_state_dict(self.head.state_dict())  # (a weight-normed layer cannot be deep-copied)
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.center_momentum = center_momentum
        # DINO cancels the last layer's gradient in its first epoch(s); a zero gradient (not none) keeps DDP's
        # bookkeeping whole, and with the optimizer's moments still zero and the layer weight-normalised
        # (only the direction of weight_v counts, weight decay only scales it) it stays put; a learning norm
        # (weight_g, without norm_last_layer) only shrinks by the weight decay meanwhile.
        self.last_layer_frozen = False
        for weight in (self.head.last_layer.weight_v, self.head.last_layer.weight_g):
            if weight.requires_grad:  # weight_g (the norm) trains only without norm_last_layer
                weight.register_hook(self._gate)

    @property
    def kept_encoder(self) -> nn.Module:
        """The encoder DINO evaluates and releases: the teacher."""
        return self.teacher_encoder

    def _gate(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad) if self.last_layer_frozen else grad

    def forward(self, views, *more_views):
        views = (views, *more_views) if more_views else tuple(views)
        student, bottleneck = run_head(self.head, encode_crops(self.encoder, views))  # one head call, every crop
        with torch.no_grad():
            teacher, _ = run_head(self.teacher_head, self.teacher_encoder(torch.cat(views[:2])))
            teacher = teacher.chunk(2)
            center = self.center.clone()
            if self.training:
                update_center(self.center, teacher, self.center_momentum)
        return tuple(teacher), tuple(student.chunk(len(views))), center, bottleneck[: len(views[0])]

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        update_momentum(self.encoder, self.teacher_encoder, momentum)
        update_momentum(self.head, self.teacher_head, momentum)


def run_head(head: DINOProjectionHead, features: torch.Tensor):
    """lightly's DINOProjectionHead.forward with its last two steps in float32: -> (logits, normalised bottleneck)."""
    h, exact = full_precision(head.layers(features))
    with exact:
        bottleneck = F.normalize(h, dim=-1, p=2)
        return head.last_layer(bottleneck), bottleneck


def _head(in_features: int, out_dim: int, batch_norm: bool, norm_last_layer: bool) -> DINOProjectionHead:
    with warnings.catch_warnings():  # lightly builds the last layer with torch's older weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        return DINOProjectionHead(in_features, 2048, 256, out_dim, batch_norm=batch_norm,
                                  norm_last_layer=norm_last_layer)
