"""The momentum of an EMA teacher (dino's teacher, byol's target): BYOL's cosine schedule from a base momentum
to 1 over the run, with a base that lets a short run's teacher forget its random start.

A teacher updated with momentum m_k after each of K steps keeps prod_k m_k ~ exp(-sum_k (1 - m_k)) of its initial
weights, and the cosine schedule from m0 to 1 gives sum = (1 - m0) K / 2. The published m0 = 0.996 was set for
runs of 10^5 steps and more (BYOL: 1000 ImageNet epochs, 312k steps; DINO: 100 epochs, 125k). Over the 510 steps
of 30 sample epochs at batch 64 it gives 1.02: the teacher still holds e^-1.02 = 36 % of its random
initialisation at the end, and that teacher is what dino saves and what byol's predictions chase.

`momentum=None` (the tasks' default) takes m0 = min(0.996, 1 - FORGET / K): the published value wherever
K >= 2,500 steps, and below it a teacher whose sum is at least FORGET / 2 = 5 (under 1 % of the start left;
0.980 at 510 steps), but never below FLOOR = 0.9, the smallest base in BYOL's ablation (Table 5) that still
learnt well (runs under 100 steps keep more of their start). A momentum given by the user is used as given.
"""

from __future__ import annotations

from lightly.utils.scheduler import cosine_schedule

PUBLISHED = 0.996  # BYOL's tau_base and DINO's momentum_teacher
FORGET = 10.0  # K (1 - m0): twice the e-folds of its start the teacher sheds over the run
FLOOR = 0.9


def base_momentum(given: float | None, total_steps: int) -> float:
    if given is not None:
        return float(given)
    return max(FLOOR, min(PUBLISHED, 1.0 - FORGET / max(1, total_steps)))


def momentum_at(given: float | None, step: int, total_steps: int) -> float:
    """The teacher's momentum after optimizer step `step` of `total_steps` (lightly's cosine_schedule)."""
    return cosine_schedule(step, max(1, total_steps), base_momentum(given, total_steps), 1.0)
