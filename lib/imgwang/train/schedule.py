"""Learning-rate schedules, stepped once per batch; each param group keeps its own peak lr."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from ..core.errors import ConfigError
from ..spec.checks import fraction, schedule_name

FLAT_COS_FINAL = 1e-5  # fastai's fit_flat_cos anneals to lr / div_final, div_final = 1e5


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_frac: float = 0.1,
                   flat_frac: float = 0.75) -> LRScheduler:
    """The group's current `lr` is its peak: one-cycle ramps up to it over 25% of the steps and anneals;
    flat_cos (fastai's fit_flat_cos) holds it for `flat_frac` of the steps, then anneals it along a cosine
    to peak / 1e5; cosine warms up linearly over `warmup_frac` of the steps, then decays to 0."""
    check_schedule(kind, warmup_frac, flat_frac)
    if total_steps < 1:
        raise ConfigError(f"a schedule needs at least one step, got total_steps={total_steps}")
    if kind == "onecycle":
        if total_steps < 4:  # too few steps for a ramp up and down: OneCycleLR divides by zero
            return LambdaLR(optimizer, lambda step: 1.0)
        peaks = [group["lr"] for group in optimizer.param_groups]
        # 25% warm-up (fastai's default), at least 2 steps so each phase has length
        return OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=max(0.25, 2 / total_steps))
    if kind == "flat_cos":
        return LambdaLR(optimizer, flat_then_cosine(total_steps, flat_frac))
    if kind == "cosine":
        return LambdaLR(optimizer, cosine_with_warmup(total_steps, warmup_frac))
    return LambdaLR(optimizer, lambda step: 1.0)  # constant


def check_schedule(kind: str, warmup_frac: float = 0.1, flat_frac: float = 0.75) -> str:
    """One line for a bad schedule name or fraction (also called before any compute)."""
    schedule_name("schedule", kind)
    fraction("warmup_frac", warmup_frac)
    fraction("flat_frac", flat_frac)
    return kind


def cosine_with_warmup(total_steps: int, warmup_frac: float):
    """Multiplier of the peak lr at each step: linear 0 -> 1 over the warmup, then cosine 1 -> 0."""
    warmup = int(round(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def flat_then_cosine(total_steps: int, flat_frac: float):
    """Multiplier of the peak lr at each step: 1 for the first `flat_frac` of the steps, then a cosine from 1
    down to FLAT_COS_FINAL at the end (fastai's combined_cos(pct_start, lr, lr, lr / div_final))."""
    flat = int(round(total_steps * flat_frac))

    def factor(step: int) -> float:
        if step < flat:
            return 1.0
        progress = min(1.0, (step - flat) / max(1, total_steps - flat))
        return FLAT_COS_FINAL + (1.0 - FLAT_COS_FINAL) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
