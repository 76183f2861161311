"""Operations pretext tasks share: the n-way classification head, loss and metric (rotation, quadrant, scale,
transform's head), and batched crops of boxes (quadrant, scale). No task imports another task's file."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .base import Task


def classifier_model(encoder: nn.Module, n_outputs: int, **head_options) -> nn.Module:
    """encoder -> pooled features -> MLP head -> (B, n_outputs) logits; `model.encoder` is what transfers."""
    from ..models.heads import MLPHead  # imported here so registering tasks never needs the models

    return nn.Sequential(OrderedDict(encoder=encoder, head=MLPHead(encoder.num_features, n_outputs, **head_options)))


class ClassificationTask(Task):
    """A task whose target is one of `n_classes` labels drawn uniformly: chance is 1 / n_classes."""

    metric_name = "accuracy"
    n_classes: int = 0  # a class attribute, or set before ClassificationTask.__init__ runs

    def __init__(self, *, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        self.chance = 1.0 / self.n_classes

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return classifier_model(encoder, self.n_classes)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def metric(self, outputs, targets):
        return (outputs.argmax(dim=1) == targets).float().mean()


def quadrant_boxes(q: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Quadrant index (0 TL, 1 TR, 2 BL, 3 BR) -> (top, left, height, width), all quadrants of equal size."""
    qh, qw = h // 2, w // 2
    top = (q // 2) * (h - qh)  # odd sizes: the bottom/right quadrants end at the border, same size
    left = (q % 2) * (w - qw)
    return torch.stack([top, left, torch.full_like(q, qh), torch.full_like(q, qw)], dim=1)


def crop_resize(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, crop: tuple[int, int],
                size: tuple[int, int]) -> torch.Tensor:
    """Cut a (crop_h, crop_w) box at each image's (top, left) and resize it to `size` (bilinear).

    One gather and one interpolate for the batch; the box size is a Python int pair, so nothing waits
    on the GPU (no per-image Python, no host sync).
    """
    ch, cw = crop
    b = images.shape[0]
    rows = top[:, None] + torch.arange(ch, device=images.device)  # (B, ch)
    cols = left[:, None] + torch.arange(cw, device=images.device)  # (B, cw)
    batch = torch.arange(b, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if (ch, cw) == tuple(size):
        return crops.contiguous()
    return F.interpolate(crops, size=size, mode="bilinear", align_corners=False)  # convex: stays in [0, 1]


def mask_outside(images: torch.Tensor, boxes: torch.Tensor, fill: float) -> torch.Tensor:
    """Keep each image's box, set every other pixel to `fill`."""
    _, _, h, w = images.shape
    ys = torch.arange(h, device=images.device)[None, :, None]
    xs = torch.arange(w, device=images.device)[None, None, :]
    top, left, bh, bw = (boxes[:, i, None, None] for i in range(4))
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)  # (B, H, W)
    return torch.where(inside[:, None], images, torch.full_like(images, fill))
