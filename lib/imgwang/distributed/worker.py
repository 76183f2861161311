"""The worker side of a launch: `torchrun ... -m imgwang.distributed.worker <job.json>` on every rank.

The job file holds the stage, its resolved config and folders (written by launch.py). Every rank joins the
process group, takes rank 0's job (so a machine joining with NODE_RANK > 0 needs nothing but the rendezvous
settings and the data at the same path), and runs the stage's own function (the spec's `run`), which is
rank-aware: sharded loaders, DDP, rank-0 checkpoints and files. Rank 0 then writes the job's result file,
which the kernel reads back: status done / interrupted / failed, and the stage's `results` (the spec's).

Exit codes: 0 done, 130 interrupted (the last complete epoch is in last.pt), 1 failed (one `error:` line).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from .. import runs
from ..core import atomic, threads
from ..core.device import resolve_device
from ..core.errors import ImgwangError
from ..core.interrupt import TrainingInterrupted
from ..core.plain import to_plain
from ..spec import STAGES
from . import world

# torchrun ends every rank once one exits with an error: the other ranks wait until rank 0, stopped by the same
# error at the same step, has written the result (on its machine they see the file), at most this long.
EXIT_DELAY_S = 3


def wait_for_lead(result_path: Path, timeout: float = EXIT_DELAY_S) -> None:
    deadline = time.monotonic() + timeout
    while not result_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def write_result(path: Path, result: dict) -> None:
    atomic.write_json(path, to_plain(result), indent=1, default=str)


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
        keep = (lambda share: runs.update_stage(run_dir, stage, threads=share)) if lead else None
        threads.start_stage(cfg.get("threads"), device.type, keep, stage, say=print if lead else (lambda _: None))
        spec = STAGES[stage]
        module, _, function = spec.run.partition(":")
        result = getattr(importlib.import_module(module), function)(cfg, run_dir, Path(job["runs_dir"]))
        if lead:
            write_result(result_path, {"status": "done", "world": info.record(cfg["bs"] // info.world_size),
                                       **{k: result[k] for k in spec.results}})
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
