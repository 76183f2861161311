"""Losses written out: the contrastive loss is ours; NT-Xent and DINO's loss are checked against lightly's
in the tests."""

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
    """DINO's centre, in place: center <- m * center + (1 - m) * mean of the teacher logits over views and the
    batch (under torchrun the global batch, as DINO's all_reduce)."""
    from ..distributed.gather import gather_rows

    batch_center = gather_rows(torch.cat(list(teacher_out)).float()).mean(dim=0, keepdim=True)  # every rank's
    center.mul_(momentum).add_(batch_center, alpha=1 - momentum)
