"""Ctrl-C under torchrun: every rank stops at the same step, so none is left waiting in a collective.

A signal may reach the ranks at different moments (or only some of them: the ranks of the node where
Ctrl-C was pressed). Each rank's InterruptGuard only records it; `SharedStop.check`, called by every rank at
the same points (each training step, each epoch end), takes the maximum of the flags over the control
group (gloo, CPU: the GPU streams are not touched) and raises TrainingInterrupted on every rank at once.
Repeated signals do not raise at once as in one process (each rank may get one from torchrun and one from
the caller); a stuck rank is ended by torchrun, which kills what has not exited 30 s after the signal.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..core.interrupt import InterruptGuard, TrainingInterrupted
from .world import control_group, is_distributed


class SharedStop:
    """Wraps an InterruptGuard: same interface (`check`, `epoch_completed`), decision shared by all ranks."""

    def __init__(self, guard: InterruptGuard):
        self.guard = guard
        guard.escalate = False
        self._flag = torch.zeros(1, dtype=torch.int32)

    @property
    def epoch_completed(self) -> int:
        return self.guard.epoch_completed

    @epoch_completed.setter
    def epoch_completed(self, value: int) -> None:
        self.guard.epoch_completed = value

    def check(self, epoch_completed: int) -> None:
        self._flag.fill_(1 if self.guard.received is not None else 0)
        dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=control_group())
        if int(self._flag.item()):
            raise TrainingInterrupted(epoch_completed, f"interrupted by {self.guard.received or 'another rank'}")


def shared(guard: InterruptGuard):
    return SharedStop(guard) if is_distributed() else guard
