"""Who am I in the world: init from torchrun's environment, rank and size, rank-0 helpers.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in every worker;
`init_from_env` reads them. Outside torchrun (a kernel, a test) nothing is initialised and every helper
answers as the only process: rank 0 of a world of 1.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

_control = None  # a gloo group on CPU tensors for host-side votes (no GPU stream is touched)


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    world_size: int
    nodes: int
    backend: str | None

    def record(self, per_process_batch: int) -> dict:
        """What run.json keeps about the world a stage ran in."""
        out = asdict(self)
        del out["rank"], out["local_rank"]
        return {**out, "per_process_batch": per_process_batch, "global_batch": per_process_batch * self.world_size}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank_zero() -> bool:
    return rank() == 0


def current() -> World:
    """The world of this process (a world of one outside torchrun)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World(0, 0, 1, 1, None)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    return World(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size(),
                 max(1, dist.get_world_size() // max(1, local)), dist.get_backend())


def in_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def init_from_env(device: torch.device) -> World:
    """Join the process group torchrun prepared: NCCL for CUDA (one GPU per local rank), gloo otherwise."""
    global _control
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    _control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return current()


def local_device(device: torch.device) -> torch.device:
    """This rank's device: cuda:<local rank> for CUDA, the given device otherwise."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown() -> None:
    global _control
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _control = None


def control_group():
    return _control if _control is not None else dist.group.WORLD


def broadcast_object(obj=None):
    """Rank 0's `obj` on every rank (pickled; for rows, decisions and checkpoints, not per-step data)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=control_group())
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In place sum over ranks (no-op in a world of one)."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    if is_distributed():
        dist.barrier(group=control_group())


def shard() -> tuple[int, int]:
    """(rank, world size): which slice of every global batch this process takes."""
    return rank(), world_size()
