"""Learning-rate schedules, stepped once per batch; each param group keeps its own peak lr."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from ..errors import ConfigError

SCHEDULES = ("onecycle", "cosine", "constant")


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_frac: float = 0.1) -> LRScheduler:
    """The group's current `lr` is its peak: one-cycle ramps up to it over 25% of the steps and anneals;
    cosine warms up linearly over `warmup_frac` of the steps, then decays to 0."""
    if total_steps < 1:
        raise ConfigError(f"a schedule needs at least one step, got total_steps={total_steps}")
    if not 0.0 <= warmup_frac < 1.0:
        raise ConfigError(f"warmup_frac must be in [0, 1), got {warmup_frac}")
    if kind == "onecycle":
        if total_steps < 4:  # too few steps for a ramp up and down: OneCycleLR divides by zero
            return LambdaLR(optimizer, lambda step: 1.0)
        peaks = [group["lr"] for group in optimizer.param_groups]
        # 25% warm-up (fastai's default), at least 2 steps so each phase has length
        return OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=max(0.25, 2 / total_steps))
    if kind == "cosine":
        return LambdaLR(optimizer, cosine_with_warmup(total_steps, warmup_frac))
    if kind == "constant":
        return LambdaLR(optimizer, lambda step: 1.0)
    raise ConfigError(f"unknown schedule={kind!r}; use one of: {', '.join(SCHEDULES)}")


def cosine_with_warmup(total_steps: int, warmup_frac: float):
    """Multiplier of the peak lr at each step: linear 0 -> 1 over the warmup, then cosine 1 -> 0."""
    warmup = int(round(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


OPTIMIZERS = ("adamw", "sgd")


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0) -> list[dict]:
    """Encoder params at `lr`, the rest (heads) at lr * head_lr_mult; no weight decay on biases and norms.

    Only parameters that require grad when this is called are included (frozen-for-good stays out).
    Groups carry a `name`, so the loop can report each group's lr.
    """
    encoder = getattr(model, "encoder", None)
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    groups: dict[str, dict] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        part = "encoder" if id(p) in encoder_ids else "head"
        decay = p.dim() >= 2  # kernels decay; biases and norm scales/shifts do not
        name = part if decay else f"{part}_no_decay"
        group = groups.setdefault(name, {"name": name, "params": [], "weight_decay": weight_decay if decay else 0.0,
                                         "lr": lr if part == "encoder" else lr * head_lr_mult})
        group["params"].append(p)
    order = ["encoder", "encoder_no_decay", "head", "head_no_decay"]
    return [groups[n] for n in order if n in groups]


def make_optimizer(model: torch.nn.Module, kind: str, lr: float, weight_decay: float, head_lr_mult: float = 1.0):
    groups = param_groups(model, lr, weight_decay, head_lr_mult)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise ConfigError(f"unknown optimizer={kind!r}; use one of: {', '.join(OPTIMIZERS)}")
