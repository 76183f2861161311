"""Heads: small modules, one job each, that turn encoder output into task outputs.

Every head returns raw scores (logits or similarities), never an activation: the loss applies the
sigmoid/softmax exactly once. (The seed research applied its last activation twice and never learned.)
No head squeezes: a batch of one stays a batch of one.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import ConfigError


def inverse_sigmoid(p: float) -> float:
    """The logit whose sigmoid is p: start a binary head at the positive rate instead of at 0.5."""
    if not 0.0 < p < 1.0:
        raise ConfigError(f"inverse_sigmoid needs a rate strictly between 0 and 1, got {p}")
    return math.log(p / (1.0 - p))


class MLPHead(nn.Module):
    """Linear(-BN)-ReLU(-Dropout) blocks, then a final Linear that outputs logits.

    Accepts (..., in_features): leading dimensions (e.g. batch x candidates) are flattened so BatchNorm1d
    always normalises the feature dimension over every row, then restored. `final_bias` sets the last
    bias (a float or a sequence of out_features floats), e.g. `inverse_sigmoid(pct_pos)`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (256,),
        batchnorm: bool = True,
        dropout: float = 0.0,
        final_bias=None,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batchnorm))  # BN's shift makes the bias redundant
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_features)
        self.in_features, self.out_features = in_features, out_features
        if final_bias is not None:
            with torch.no_grad():
                self.out.bias.copy_(torch.as_tensor(final_bias, dtype=self.out.bias.dtype).expand(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.out(self.hidden(x.reshape(-1, x.shape[-1])))
        return y.reshape(*lead, self.out_features)


class DotProductHead(nn.Module):
    """Score each candidate embedding against its query: (B, D), (B, K, D) -> (B, K)."""

    def forward(self, query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,bkd->bk", query, candidates)


class CosineSimilarityHead(nn.Module):
    """Cosine similarity divided by a temperature (so the scores work as logits): (B, D), (B, K, D) -> (B, K)."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        q = F.normalize(query, dim=-1)
        c = F.normalize(candidates, dim=-1)
        return torch.einsum("bd,bkd->bk", q, c) / self.temperature


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling side by side: (B, C, h, w) -> (B, 2C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class ClassifierHead(nn.Sequential):
    """fastai's head on feature maps: concat pool -> BN -> dropout -> linear -> ReLU -> BN -> dropout -> linear.

    As in fastai, the first dropout is half the second (`dropout`).
    """

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.25, hidden: int = 512):
        super().__init__(
            AdaptiveConcatPool2d(),
            nn.BatchNorm1d(2 * in_features),
            nn.Dropout(dropout / 2),
            nn.Linear(2 * in_features, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )


def projection_head(in_features: int, out_features: int = 128, hidden: int = 2048, num_layers: int = 2,
                    batchnorm: bool = True) -> nn.Module:
    """SimCLR's projector (lightly's SimCLRProjectionHead): Linear-BN-ReLU layers then a Linear; our argument names."""
    from lightly.models.modules.heads import SimCLRProjectionHead  # here, not above: it imports timm (models/encoders.py)

    return SimCLRProjectionHead(input_dim=in_features, hidden_dim=hidden, output_dim=out_features,
                                num_layers=num_layers, batch_norm=batchnorm)


class Prototypes(nn.Module):
    """SwAV's prototypes (facebookresearch/swav, `nn.Linear(dim, n, bias=False)`): scores z @ C^T against n
    learnable unit vectors C, with no bias (lightly's SwaVPrototypes carries one; SwAV and solo-learn do not).

    `normalize()` puts every prototype back on the unit sphere (SwAV does so before each iteration);
    `frozen = True` zeroes their gradient (SwAV sets it to None for its first `freeze_prototypes_niters`
    iterations). A zero gradient, not none, keeps DDP's bookkeeping whole; at the start of a run the
    optimizer's moments are zero, so they do not move, and weight decay only scales them, which the next
    normalize() undoes."""

    def __init__(self, dim: int, n_prototypes: int):
        super().__init__()
        layer = nn.Linear(dim, n_prototypes, bias=False)  # nn.Linear's initialisation, as SwAV's
        self.weight = layer.weight
        self.frozen = False
        self.weight.register_hook(self._gate)

    def _gate(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad) if self.frozen else grad

    @torch.no_grad()
    def normalize(self) -> None:
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.to(z.dtype).t()
