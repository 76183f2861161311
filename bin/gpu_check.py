#!/usr/bin/env python
"""GPU path check, run once on a machine with CUDA: device selection, AMP, the on-device augmentation and
task batches, through the same stage functions the notebooks call (no papermill needed).

    python bin/gpu_check.py [--tasks patchwork rotation simclr unmix] [--epochs 3]

Prints one line per pretext task (val metric vs chance, images/s) and the transfer accuracy of the first
task's encoder beside a random-init baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=["patchwork", "rotation", "simclr", "unmix"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--allow-cpu", action="store_true", help="run the same checks on the CPU (a dry run)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="imgwang-gpu-"))
    os.environ.update(IMGWANG_DATA=str(work / "data"), IMGWANG_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1")

    import torch

    from imgwang import config
    from imgwang.device import resolve_device
    from imgwang.stages.pretrain import run_pretrain
    from imgwang.stages.transfer import run_transfer
    from imgwang.train.loop import autocast_dtype

    device = resolve_device("auto")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(0)}), autocast {autocast_dtype('auto', device)}" if device.type == "cuda" else ""))
    if device.type != "cuda" and not args.allow_cpu:
        print("no CUDA device: this check is for a GPU machine")
        return 1
    common = dict(data="sample", arch=args.arch, size=args.size, seed=0, device="auto", comet="off", resume=False)
    runs_dir = work / "runs"
    for i, task in enumerate(args.tasks):
        cfg = config.resolve("pretrain", {**common, "task": task, "task_params": {}, "epochs": args.epochs, "bs": 128,
                                          "lr": 0, "grad_stats": False, "version": f"v{i + 1}"})
        run_dir = runs_dir / f"v{i + 1}"
        run_dir.mkdir(parents=True)
        r = run_pretrain(cfg, run_dir)
        on_gpu = next(r["model"].parameters()).device.type
        print(f"RESULT pretrain {task:10s} val {r['task'].metric_name} {r['val_metric']:.3f} (chance {r['task'].chance:.3f}) "
              f"{r['images_per_s']:.0f} img/s, params on {on_gpu}, {r['wall_s']:.1f}s")
    for source in ("v1", "none"):
        cfg = config.resolve("transfer", {**common, "from_version": source, "epochs": 5, "bs": 64, "lr": 0, "runs": 1,
                                          "version": f"t-{source}"})
        run_dir = runs_dir / f"t-{source}"
        run_dir.mkdir(parents=True)
        r = run_transfer(cfg, run_dir, runs_dir)
        print(f"RESULT transfer from {source:5s} val_acc {r['val_acc']:.3f} ({r['wall_s']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
