"""The model a distributed training step calls: global BatchNorm, then DistributedDataParallel."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .batchnorm import convert_batchnorm
from .world import is_distributed, rank


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers normalise over the global batch (before the optimizer sees the parameters)."""
    return convert_batchnorm(model, device) if is_distributed() else model


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around `model` (its trainable parameters now: rebuild after freezing or unfreezing), else `model`.

    Parameters and buffers start as rank 0's (so only rank 0 needs to load a checkpoint); after that buffers
    are not re-sent every step: BatchNorm statistics agree already, being global, and a per-rank buffer (a
    feature queue) must not be overwritten by rank 0's."""
    if not is_distributed():
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def rank_seed_parts() -> tuple:
    """Extra seed parts that give each rank its own random stream; none on rank 0, so a world of one
    draws exactly what a single-process run always drew."""
    r = rank()
    return (r,) if r else ()
