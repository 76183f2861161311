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
    """
    b = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.arange(2 * b, device=z.device).roll(b)  # view i's partner is view i + b (mod 2b)
    return F.cross_entropy(logits, partner)


def dino_loss(teacher_out, student_out, center: torch.Tensor, teacher_temp: float, student_temp: float = 0.1) -> torch.Tensor:
    """DINO's cross-entropy (Caron et al., 2021; facebookresearch/dino, DINOLoss.forward): each teacher view's
    centred, sharpened softmax is the target of every student view but the same one, averaged over the
    pairs and the batch. `teacher_out`: the global views' teacher logits; `student_out`: every view's student
    logits (global first), each (B, K); `center` (1, K). Plain tensors in, so a cross-rank gather can wrap
    them. Written out rather than lightly's DINOLoss (the tests check it against it): lightly makes its
    temperature a fresh host tensor each call, a blocking copy on a GPU."""
    teacher = torch.stack(teacher_out)
    targets = F.softmax((teacher - center) / teacher_temp, dim=-1).detach()
    log_probs = F.log_softmax(torch.stack(student_out) / student_temp, dim=-1)
    pairs = -torch.einsum("tbk,sbk->ts", targets, log_probs)  # summed over the batch
    t, s, b = teacher.shape[0], log_probs.shape[0], teacher.shape[1]
    same_view = torch.eye(t, s, dtype=torch.bool, device=pairs.device)
    return pairs.masked_fill(same_view, 0).sum() / ((t * s - min(t, s)) * b)


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out, momentum: float = 0.9) -> None:
    """DINO's centre, in place: center <- m * center + (1 - m) * mean of the teacher logits over views and batch."""
    batch_center = torch.cat(list(teacher_out)).float().mean(dim=0, keepdim=True)
    center.mul_(momentum).add_(batch_center, alpha=1 - momentum)
