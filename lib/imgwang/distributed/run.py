"""The worker side of a launch: `torchrun ... -m imgwang.distributed.run <job.json>` on every rank.

The job file holds the stage, its resolved config and folders (written by launch.py). Every rank joins the
process group, takes rank 0's job (so a machine joining with NODE_RANK > 0 needs nothing but the rendezvous
settings and the data at the same path), and runs the stage's own training code (stages/pretrain.py, stages/transfer.py), which is
rank-aware: sharded loaders, DDP, rank-0 checkpoints and files. Rank 0 then writes the job's result file,
which the kernel reads back: status done / interrupted / failed, and the numbers the notebook glues.

Exit codes: 0 done, 130 interrupted (the last complete epoch is in last.pt), 1 failed (one `error:` line).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .. import atomic, threads
from ..device import resolve_device
from ..errors import ImgwangError
from ..train.interrupt import TrainingInterrupted
from . import world

# torchrun ends every rank once one exits with an error: the other ranks wait until rank 0, stopped by the same
# error at the same step, has written the result (on its machine they see the file), at most this long.
EXIT_DELAY_S = 3


def wait_for_lead(result_path: Path, timeout: float = EXIT_DELAY_S) -> None:
    deadline = time.monotonic() + timeout
    while not result_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def plain(value):
    """JSON-safe copy (numbers, lists, dicts); NaN stays NaN (Python's json writes and reads it)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def write_result(path: Path, result: dict) -> None:
    atomic.write_json(path, plain(result), indent=1)


def summary(stage: str, result: dict) -> dict:
    """What the kernel needs from a finished stage (the model itself is read from the run folder)."""
    if stage == "pretrain":
        keep = ("history", "val_metric", "val_loss", "images_per_s", "knn_acc", "knn_acc_init", "wall_s")
        return {**{k: result[k] for k in keep}, "chance": result["task"].chance}
    return {k: result[k] for k in ("val_accs", "val_acc", "val_acc_std", "histories", "wall_s")}


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text())
    result_path = Path(job["result"])
    lead = False
    try:
        device = world.local_device(resolve_device(job["cfg"].get("device", "auto")))
        info = world.init_from_env(device)
        lead = info.rank == 0
        job = {**world.broadcast_object(job), "result": str(result_path)}  # node 0's config and run folder
        stage, cfg, run_dir = job["stage"], job["cfg"], Path(job["run_dir"])
        # each rank is a stage process: its share of the cores (rank 0 prints it and records it in run.json)
        threads.start_stage(cfg.get("threads"), device.type, run_dir if lead else None, stage,
                            say=print if lead else (lambda _: None))
        if stage == "pretrain":
            from ..stages.pretrain import run_pretrain

            result = run_pretrain(cfg, run_dir)
        else:
            from ..stages.transfer import run_transfer

            result = run_transfer(cfg, run_dir, Path(job["runs_dir"]))
        if lead:
            write_result(result_path, {"status": "done", "world": info.record(cfg["bs"] // info.world_size),
                                       **summary(stage, result)})
        return 0
    except TrainingInterrupted as e:
        if lead:
            write_result(result_path, {"status": "interrupted", "epoch_completed": e.epoch_completed, "message": str(e)})
        else:
            wait_for_lead(result_path)
        return 130
    except ImgwangError as e:
        if lead:
            write_result(result_path, {"status": "failed", "error": str(e)})
            print(f"error: {e}", file=sys.stderr, flush=True)
        else:
            print(f"error (rank {world.rank()}): {e}", file=sys.stderr, flush=True)
            wait_for_lead(result_path)
        return 1
    finally:
        world.shutdown()


if __name__ == "__main__":
    sys.exit(main())
