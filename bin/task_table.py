#!/usr/bin/env python
"""Does every pretext task learn? Pretrain each task with the 01-pretrain notebook on DATA (default: the
sample data) and print its pretext val metric beside its chance level as a Markdown table, with the last
epoch's kNN monitor (how well the frozen features separate the labelled classes) beside the untrained
encoder's.

    python bin/task_table.py [--data sample] [--epochs N] [--prefix tasks] [--tasks patchwork ...] [stage.py options]

Each task runs as `bin/stage.py pretrain --version <prefix>-<task>`, so the executed notebooks stay in
runs/ to look at; a version that already exists is read, not run again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from imgwang.runs import STAGES
from imgwang.stages.compare import stage_scraps
from imgwang.tasks import task_names

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="sample")
    p.add_argument("--epochs", default="")
    p.add_argument("--prefix", default="tasks")
    p.add_argument("--tasks", nargs="*", default=None)
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    args, extra = p.parse_known_args(argv)  # the rest goes to bin/stage.py, e.g. --arch tinyconv --size 64
    rows = ["| task | metric | pretext val metric | chance | above chance by | kNN acc | kNN untrained | epochs | arch | size | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    failed = 0
    for task in args.tasks or task_names():
        version = f"{args.prefix}-{task}"
        notebook = Path(args.runs_dir) / version / STAGES["pretrain"]
        if not notebook.exists():
            cmd = [sys.executable, str(REPO / "bin" / "stage.py"), "pretrain", "--version", version, "--task", task,
                   "--data", args.data, "--epochs", args.epochs, "--comet", "off", "--runs-dir", args.runs_dir, *extra]
            print(f"$ {' '.join(cmd[1:])}", flush=True)
            if subprocess.run(cmd, cwd=REPO).returncode != 0:
                failed += 1
        s = stage_scraps(Path(args.runs_dir) / version, "pretrain")
        if "pretext_val_metric" not in s:
            rows.append(f"| {task} | | failed: see {notebook} | | | | | | | | |")
            continue
        cfg = s["config"]
        metric, chance = s["pretext_val_metric"], s["pretext_chance"]
        # the frozen encoder's kNN accuracy on train/ classes, after pretraining and untrained (knn_every > 0)
        knn, init = (_number(s.get(k)) for k in ("pretrain_knn_acc", "pretrain_knn_init"))
        rows.append(f"| {task} | {s['pretext_metric_name']} | {metric:.3f} | {chance:.3f} | {metric - chance:+.3f} | {knn} | {init} | "
                    f"{cfg['epochs']} | {cfg['arch']} | {cfg['size']} | {s['pretrain_wall_s']:.0f} |")
    print("\n".join(rows))
    return 1 if failed else 0


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else ""


if __name__ == "__main__":
    sys.exit(main())
