"""The worker side of a launch: `torchrun ... -m imgwang.distributed.run <job.json>` on every rank.

The job file holds the stage, its resolved config and folders (written by launch.py). Every rank joins the
process group and runs the stage's own training code (stages/pretrain.py, stages/transfer.py), which is
rank-aware: sharded loaders, DDP, rank-0 checkpoints and files. Rank 0 then writes the job's result file,
which the kernel reads back: status done / interrupted / failed, and the numbers the notebook glues.

Exit codes: 0 done, 130 interrupted (the last complete epoch is in last.pt), 1 failed (one `error:` line).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..device import resolve_device
from ..errors import ImgwangError
from ..train.interrupt import TrainingInterrupted
from . import world


def plain(value):
    """JSON-safe copy (numbers, lists, dicts); NaN/inf become None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def write_result(path: Path, result: dict) -> None:
    from ..runs import atomic_write_text

    atomic_write_text(Path(path), json.dumps(plain(result), indent=1) + "\n")


def summary(stage: str, result: dict) -> dict:
    """What the kernel needs from a finished stage (the model itself is read from the run folder)."""
    if stage == "pretrain":
        keep = ("history", "val_metric", "val_loss", "images_per_s", "knn_acc", "knn_acc_init", "wall_s")
        return {**{k: result[k] for k in keep}, "chance": result["task"].chance}
    return {k: result[k] for k in ("val_accs", "val_acc", "val_acc_std", "histories", "wall_s")}


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text())
    stage, cfg, run_dir = job["stage"], job["cfg"], Path(job["run_dir"])
    result_path = Path(job["result"])
    lead = False
    try:
        device = world.local_device(resolve_device(cfg["device"]))
        info = world.init_from_env(device)
        lead = info.rank == 0
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
        return 130
    except ImgwangError as e:
        if lead:
            write_result(result_path, {"status": "failed", "error": str(e)})
            print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        world.shutdown()


if __name__ == "__main__":
    sys.exit(main())
