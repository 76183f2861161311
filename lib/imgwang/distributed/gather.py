"""The global batch for losses: what a loss needs from the other ranks during a training step.

Contrastive and clustering losses are not sums over rows: simclr's negatives are every other view of the
batch, SwAV's Sinkhorn balances codes over the whole batch. Under DDP each rank holds BS / world rows, so
during a training step (`global_batch()`, entered by the fit loop) a loss asks for:

- `gather_rows(x)`: every rank's rows in rank order, with gradient (lightly's GatherLayer: the backward
  sums every rank's gradient for this rank's rows; with DDP's gradient average that gives exactly the
  gradient of one process on the whole batch, when each rank's loss is the mean over its own rows);
- `row_offset(n)`: where this rank's rows start in the gathered tensor;
- `gathering()`: True inside a distributed training step (Sinkhorn's sums go through all-reduce then).

Outside `global_batch()` (validation: every rank evaluates the whole val set, as one process would) and in
a world of one these are identities, so the same loss code serves one process and many.
"""

from __future__ import annotations

import contextlib

import torch
from lightly.utils.dist import gather

from .world import is_distributed, rank, world_size

_active = False


@contextlib.contextmanager
def global_batch():
    """Losses inside see the whole global batch (only where every rank runs the same step)."""
    global _active
    previous, _active = _active, is_distributed()
    try:
        yield
    finally:
        _active = previous


def gathering() -> bool:
    return _active


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows of `x`, rank 0's first, differentiable; `x` itself when not gathering."""
    if not _active:
        return x
    return torch.cat(gather(x.contiguous()), dim=0)


def row_offset(n: int) -> int:
    """Index of this rank's first row in `gather_rows` of an n-row tensor."""
    return rank() * n if _active else 0


def global_rows(n: int) -> int:
    """Rows in the global batch when each rank has n."""
    return n * world_size() if _active else n
