"""Shared by the n-way pretext tasks (rotation, quadrant, scale): an MLP head, cross-entropy, accuracy."""

from __future__ import annotations

from collections import OrderedDict

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
    n_classes: int = 0

    @property
    def chance(self) -> float:
        return 1.0 / self.n_classes

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return classifier_model(encoder, self.n_classes)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def metric(self, outputs, targets):
        return (outputs.argmax(dim=1) == targets).float().mean()
