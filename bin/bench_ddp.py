"""make bench, distributed part: training-step throughput at 1 and 2 processes (DDP, gloo on CPU).

Every process runs fit's own training step (imgwang.train.step, fit's defaults) as fit does under torchrun:
global BatchNorm, DDP gradient averaging, the task's loss on the global batch (simclr: negatives gathered
from every rank). The per-process batch is
fixed (--batch-size), so the global batch grows with the processes (weak scaling); a perfect scaling
keeps the images per second per process constant. On CPU every process runs --threads threads (default 1:
on a busy machine a team of threads spin-waits more than it computes).
On a GPU machine (--device cuda) each process takes one GPU (NCCL) and worlds up to the GPU count run.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, world, port, args, queue):
    import torch
    import torch.distributed as dist

    from imgwang.distributed import ddp
    from imgwang.distributed.gather import global_batch
    from imgwang.models.encoders import create_encoder
    from imgwang.tasks import get_task
    from imgwang.train import FitSettings
    from imgwang.train.step import TrainStep

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        task = get_task(args.task)
        model = ddp.prepare_model(task.build_model(create_encoder(args.arch)), device)
        total = args.warmup + args.steps
        train_step = TrainStep(model, task, FitSettings(epochs=1, lr=1e-3, device=device), total, total)
        train_step.net = ddp.wrap(model, device)
        gen = torch.Generator(device=device).manual_seed(rank)
        images = torch.rand(args.batch_size, 3, args.size, args.size, device=device, generator=gen)
        counter = iter(range(total))

        def step():
            with global_batch():
                inputs, targets, _ = task.make_batch(images, gen)
                train_step.train(train_step.place(inputs), targets, next(counter))

        for _ in range(args.warmup):
            step()
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        seconds = torch.tensor([time.perf_counter() - t0])
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
        if rank == 0:
            queue.put(float(seconds))
    finally:
        dist.destroy_process_group()


def measure(world: int, args) -> float:
    """Images per second per process at `world` processes."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(rank_main, args=(world, free_port(), args, queue), nprocs=world, join=True, start_method="spawn")
    return args.steps * args.batch_size / queue.get()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (gloo) | cuda (NCCL, one GPU per process)")
    p.add_argument("--task", default="simclr")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--worlds", default="1,2")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = p.parse_args(argv)
    if args.device == "cuda":
        import torch

        worlds = [w for w in map(int, args.worlds.split(",")) if w <= torch.cuda.device_count()]
    else:
        worlds = list(map(int, args.worlds.split(",")))
    print(f"DDP step scaling: {args.task}, {args.arch}, {args.size} px, {args.batch_size} images per process, "
          f"{args.device}, {args.steps} timed steps")
    base = None
    for world in worlds:
        rate = measure(world, args)
        base = base or rate
        print(f"  {world} process(es): {rate * world:7.1f} img/s in all, {rate:7.1f} img/s per process, "
              f"scaling efficiency {rate / base:.2f}", flush=True)
    print(f"(on {os.cpu_count()} CPU cores; other work on the machine disturbs these figures)" if args.device == "cpu" else "")


if __name__ == "__main__":
    main()
