"""Losses written out where they are ours; NT-Xent from lightly."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss


def contrastive_loss(distances: torch.Tensor, same: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Hadsell, Chopra & LeCun (2006): pull same pairs together, push different pairs beyond `margin`.

    mean( same * d^2 + (1 - same) * max(0, margin - d)^2 ) over every element, so it works for pairs
    (B,) and for one anchor against many candidates (B, K). `same` is 1 for a matching pair, else 0.
    """
    if distances.shape != same.shape:
        raise ValueError(f"distances {tuple(distances.shape)} and same {tuple(same.shape)} must have one shape")
    same = same.to(distances.dtype)
    pull = same * distances.pow(2)
    push = (1 - same) * torch.clamp(margin - distances, min=0).pow(2)
    return (pull + push).mean()


_NT_XENT: dict[float, NTXentLoss] = {}


def nt_xent_loss(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy: row i of z0 and row i of z1 are the positive pair."""
    if temperature not in _NT_XENT:
        _NT_XENT[temperature] = NTXentLoss(temperature=temperature)
    return _NT_XENT[temperature](z0, z1)
