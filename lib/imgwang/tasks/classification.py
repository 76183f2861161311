"""What classification-like pretext tasks share: the n-way head, loss and metric (rotation, quadrant, scale) and
the one-logit head, loss and metric of yes/no tasks (patchwork, transform). No task imports another task's file;
box geometry is in boxes.py, random draws in sampling.py, what the view-making tasks share in multiview.py."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
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


class FirstColumn(nn.Module):
    """(B, 1) -> (B,): one logit per image. Indexing, not squeeze, so a batch of one stays a batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 0]


def binary_model(encoder: nn.Module, positive_rate: float) -> nn.Module:
    """encoder -> MLP head -> one logit per image (B,), its bias starting at the logit of the positive rate
    (so the first steps learn images, not the class balance)."""
    from ..models.heads import inverse_sigmoid

    bias = inverse_sigmoid(positive_rate) if 0.0 < positive_rate < 1.0 else None
    model = classifier_model(encoder, 1, final_bias=bias)
    model.add_module("logit", FirstColumn())
    return model


class BinaryTask(Task):
    """A yes/no task: one logit per example, binary cross-entropy; accuracy, chance the majority label's rate."""

    metric_name = "accuracy"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Equal shapes or broadcasting would silently pair every logit with every label.
        if outputs.shape != targets.shape:
            raise ValueError(f"{self.name} outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ")
        return F.binary_cross_entropy_with_logits(outputs, targets.to(outputs.dtype))

    def metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((outputs > 0) == (targets > 0.5)).float().mean()


def top_k_exact_match(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Multi-label exact match: fraction of rows whose k highest scores are exactly the k positives (k may
    differ per row)."""
    k = positive.sum(dim=1, keepdim=True)
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = highest score
    return ((rank < k) == positive).all(dim=1).float().mean()


def constant_predictor_score(targets: np.ndarray) -> float:
    """1 - mean absolute error of the best constant prediction (the median) of these targets: the chance level
    of a metric 1 - MAE."""
    return float(1.0 - np.abs(targets - np.median(targets)).mean())
