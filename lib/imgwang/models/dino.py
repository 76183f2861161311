"""DINO's student and EMA teacher (Caron et al., 2021; facebookresearch/dino): encoder -> lightly's
DINOProjectionHead for both, the teacher's centre as a buffer, the student's last layer freezable. The task
(tasks/dino.py) schedules the temperatures and momentum; the loss is models/losses.py `dino_loss`."""

from __future__ import annotations

import copy
import warnings

import torch
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

from ..data.views import same_size_runs
from .losses import update_center


class DINOModel(nn.Module):
    """Returns (teacher_out, student_out, center): the teacher's logits of the 2 global views, the student's of
    every view, and the centre the loss must use (the one before this forward's update)."""

    def __init__(self, encoder: nn.Module, out_dim: int, center_momentum: float):
        super().__init__()
        self.encoder = encoder
        self.head, self.teacher_head = (_head(encoder.num_features, out_dim) for _ in range(2))
        self.teacher_encoder = copy.deepcopy(encoder)  # the teacher starts as the student
        self.teacher_head.load_state_dict(self.head.state_dict())  # (a weight-normed layer cannot be deep-copied)
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.center_momentum = center_momentum
        # DINO cancels the last layer's gradient in its first epoch(s); a zero gradient (not none) keeps DDP's
        # bookkeeping whole, and with the optimizer's moments still zero and the layer weight-normalised
        # (norm_last_layer: only the direction of weight_v counts, weight decay only scales it) it stays put.
        self.last_layer_frozen = False
        self.head.last_layer.weight_v.register_hook(self._gate)

    def _gate(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad) if self.last_layer_frozen else grad

    def forward(self, views, *more_views):
        views = (views, *more_views) if more_views else tuple(views)
        student = []
        for group in same_size_runs(views):  # one student pass per resolution
            student.extend(self.head(self.encoder(torch.cat(group))).chunk(len(group)))
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(torch.cat(views[:2]))).chunk(2)
            center = self.center.clone()
            if self.training:
                update_center(self.center, teacher, self.center_momentum)
        return tuple(teacher), tuple(student), center

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        update_momentum(self.encoder, self.teacher_encoder, momentum)
        update_momentum(self.head, self.teacher_head, momentum)


def _head(in_features: int, out_dim: int) -> DINOProjectionHead:
    with warnings.catch_warnings():  # lightly builds the last layer with torch's older weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        return DINOProjectionHead(in_features, 2048, 256, out_dim, batch_norm=True)
