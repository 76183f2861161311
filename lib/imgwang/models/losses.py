"""Losses written out: the contrastive loss is ours; NT-Xent is checked against lightly's in the tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def nt_xent_loss(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy: row i of z0 and row i of z1 are the positive pair,
    every other of the 2B views a negative.

    Written out rather than lightly's NTXentLoss (the tests check it against lightly's): lightly drops the
    self-similarities with a boolean mask, whose result size a GPU must report to the host every step.
    Under torchrun the negatives are the views of every rank (imgwang.distributed.gather); each rank's loss
    is the mean over its own views, which DDP's gradient average turns into the whole batch's gradient.
    """
    anchors, candidates, own, partner = global_views(z0, z1)
    logits = (anchors @ candidates.T) / temperature
    logits = logits.masked_fill(own, float("-inf"))
    return F.cross_entropy(logits, partner)


def global_views(z0: torch.Tensor, z1: torch.Tensor):
    """Normalised views for a two-view loss or metric over the global batch.

    -> anchors (2b, d): this rank's views; candidates (2B, d): every rank's z0 rows, then every rank's z1
    rows (B = b in one process); own (2b, 2B) bool: where each anchor meets itself; partner (2b,): the
    candidate column of each anchor's other view.
    """
    from ..distributed.gather import gather_rows, row_offset

    b = z0.shape[0]
    n0, n1 = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
    g0, g1 = gather_rows(n0), gather_rows(n1)
    big_b = g0.shape[0]
    first = torch.arange(b, device=z0.device) + row_offset(b)  # this rank's rows among all ranks'
    columns = torch.cat([first, first + big_b])
    own = torch.arange(2 * big_b, device=z0.device).unsqueeze(0) == columns.unsqueeze(1)
    return torch.cat([n0, n1]), torch.cat([g0, g1]), own, torch.cat([first + big_b, first])
