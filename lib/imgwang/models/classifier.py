"""The supervised model used for transfer: a (pretrained) encoder plus a fresh classification head."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .heads import ClassifierHead


class Classifier(nn.Module):
    """encoder.forward_features -> fastai head (concat pool, BN, dropout, 2 linears) or pooled -> Linear.

    `head="linear"` is the linear-probe shape (freeze the encoder yourself for a true probe).
    forward takes float images in [0, 1] and returns logits (B, n_classes).
    """

    def __init__(self, encoder: nn.Module, n_classes: int, head: str = "fastai", dropout: float = 0.25):
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.encoder = encoder
        self.head_kind = head
        if head == "fastai":
            self.head = ClassifierHead(encoder.num_features, n_classes, dropout=dropout)
        elif head == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.num_features, n_classes))
        else:
            raise ConfigError(f"unknown classifier head {head!r}: use 'fastai' or 'linear'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.encoder.forward_features(x)
        if self.head_kind == "linear":
            return self.head(maps.mean(dim=(2, 3)))
        return self.head(maps)
