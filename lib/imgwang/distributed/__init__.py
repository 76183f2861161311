"""Several processes, one training run: torch.distributed under torchrun (NCCL on GPUs, gloo on CPU).

A notebook kernel cannot become several DDP processes itself, so the kernel stays the orchestrator:
`launch` runs `torchrun` on `imgwang.distributed.worker` with the resolved config, streams its lines and reads
rank 0's results back. Inside the workers the lib's own code runs, made aware of the world:

- world.py: init from torchrun's environment, rank / world size, rank-0 helpers, the control group.
- batchnorm.py: BatchNorm statistics over the global batch (torch's SyncBatchNorm on GPUs, ours on CPU).
- gather.py: the global batch for losses (embeddings gathered with gradient; Sinkhorn sums all-reduced).
- stop.py: Ctrl-C stops every rank at the same step (a vote over the control group).
- launch.py / run.py: the kernel side and the worker side of a launch.

Batch and learning rate: BS is the global batch (every rank takes BS / world of each batch of the epoch's
order) and LR is the rate for that global batch, unchanged. A run with NPROC=2 is therefore the same
optimisation as NPROC=1 (same batches, steps and schedule), only spread over two processes.
"""

from .world import World, is_distributed, is_rank_zero, rank, world_size

__all__ = ["World", "is_distributed", "is_rank_zero", "rank", "world_size"]
