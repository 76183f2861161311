"""The supervised model used for transfer: a (pretrained) encoder plus a fresh classification head."""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError
from .heads import ClassifierHead


class Classifier(nn.Module):
    """encoder.forward_features -> fastai head (concat pool, BN, dropout, 2 linears) -> logits (B, n_classes).

    forward takes float images in [0, 1]. Linear evaluation of frozen features is the evaluate stage's linear
    probe (evaluate/linear_probe.py), not a head here.
    """

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float = 0.25):
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.encoder = encoder
        self.head = ClassifierHead(encoder.num_features, n_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(x))
