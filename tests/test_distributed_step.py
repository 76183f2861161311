"""One training step over 2 processes (gloo, CPU) equals one process on the whole batch.

Each rank takes its half of a batch of 2b; DDP averages the gradients, BatchNorm is global, simclr's
negatives are gathered. Loss, every gradient and the BatchNorm running statistics must match the
single-process step on all 2b rows to 1e-5.
"""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import free_port

B = 4  # rows per rank
SIZE = 32


def build(task_name: str):
    from imgwang.models.encoders import create_encoder
    from imgwang.tasks import get_task

    torch.manual_seed(0)
    task = get_task(task_name)
    return task, task.build_model(create_encoder("tinyconv"))


def whole_batch(task):
    """Inputs and targets of the global batch, made once (the same on every rank)."""
    images = torch.rand(2 * B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    inputs, targets, _ = task.make_batch(images, torch.Generator().manual_seed(2))
    return inputs, targets


def rows(x, start, stop):
    return tuple(t[start:stop] for t in x) if isinstance(x, (tuple, list)) else x[start:stop]


def step(task, model, net, inputs, targets):
    model.train()
    outputs = net(inputs)
    loss = task.loss(outputs, targets)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    stats = {n: b.detach().clone() for n, b in model.named_buffers() if "running" in n}
    return loss.detach(), grads, stats


def rank_main(rank, world, port, out):
    """Every case in one process group (starting processes is the slow part on a busy machine)."""
    import os

    from imgwang.distributed import ddp
    from imgwang.distributed.gather import gathering, global_batch, global_rows

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    try:
        for task_name in CASES:
            task, model = build(task_name)
            inputs, targets = whole_batch(task)
            model = ddp.prepare_model(model, torch.device("cpu"))
            net = ddp.wrap(model, torch.device("cpu"))
            with global_batch():
                loss, grads, stats = step(task, model, net, rows(inputs, rank * B, (rank + 1) * B),
                                          targets[rank * B:(rank + 1) * B])
                chance = task.chance
            dist.all_reduce(loss)  # each rank's loss is the mean over its rows: the batch's is their mean
            results[task_name] = {"loss": loss / world, "grads": grads, "stats": stats, "chance": chance}
        # Without global_batch() a rank's simclr loss sees its own rows only: the gathering is what matters.
        assert not gathering() and global_rows(B) == B
        task, model = build("simclr")
        inputs, targets = whole_batch(task)
        with torch.no_grad():
            loss = task.loss(model(rows(inputs, rank * B, (rank + 1) * B)), targets[rank * B:(rank + 1) * B])
        dist.all_reduce(loss)
        results["simclr_local_loss"] = loss / world
        if rank == 0:
            torch.save(results, out + ".part")
            os.replace(out + ".part", out)  # whole or absent
        dist.barrier()  # the results are saved before any rank tears down
    finally:
        dist.destroy_process_group()


CASES = ("rotation", "simclr")  # a BatchNorm classifier head; simclr's gathered negatives (and BatchNorm)


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "rank0.pt"
    try:
        mp.spawn(rank_main, args=(2, free_port(), str(out)), nprocs=2, join=True)
    except mp.ProcessExitedException:
        # Seen once in a busy suite: a rank aborted in C++ ("terminate called without an active exception", a
        # thread left running, as at teardown). Rank 0 saves only after every collective completed, so saved
        # results stand; without them the failure is raised.
        if not out.exists():
            raise
    return torch.load(out)


@pytest.mark.parametrize("task_name", CASES)
def test_two_processes_step_equals_one_process_on_the_whole_batch(task_name, ranked):
    task, model = build(task_name)
    inputs, targets = whole_batch(task)
    loss, grads, stats = step(task, model, model, inputs, targets)
    got = ranked[task_name]

    torch.testing.assert_close(got["loss"], loss, atol=1e-5, rtol=0)
    assert got["grads"].keys() == grads.keys() and len(grads) > 4
    for name, g in grads.items():
        torch.testing.assert_close(got["grads"][name], g, atol=1e-5, rtol=0, msg=f"gradient of {name}")
    assert got["stats"].keys() == stats.keys() and stats  # BatchNorm layers present, statistics global
    for name, s in stats.items():
        torch.testing.assert_close(got["stats"][name], s, atol=1e-5, rtol=0, msg=f"buffer {name}")
    if task_name == "simclr":  # chance counts the negatives of both ranks, as one process on 2b images
        assert got["chance"] == pytest.approx(1 / (2 * 2 * B - 1)) == task.chance


def test_without_gathered_negatives_the_simclr_loss_differs(ranked):
    task, model = build("simclr")
    inputs, targets = whole_batch(task)
    with torch.no_grad():
        model.train()
        whole = task.loss(model(inputs), targets)
    assert abs(float(ranked["simclr_local_loss"]) - float(whole)) > 1e-3
