#!/usr/bin/env python
"""GPU path check, run once on a machine with CUDA: device selection, AMP, the on-device augmentation and
task batches, through the same stage functions the notebooks call (no papermill needed).

    python bin/gpu_check.py [--tasks patchwork rotation simclr unmix] [--epochs 3]

Prints, per pretext task, how many times a training step made the host wait for the GPU (CUDA's own
sync debug mode; 0 expected), one line per pretext task (val metric vs chance, images/s) and the transfer
accuracy of the first task's encoder beside a random-init baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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

    from imgwang.core.device import resolve_device
    from imgwang.stages.pretrain import run_pretrain
    from imgwang.stages.resolve import resolve
    from imgwang.stages.transfer import run_transfer
    from imgwang.train.step import autocast_dtype

    device = resolve_device("auto")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(0)}), autocast {autocast_dtype('auto', device)}" if device.type == "cuda" else ""))
    if device.type != "cuda" and not args.allow_cpu:
        print("no CUDA device: this check is for a GPU machine")
        return 1
    for task in [*args.tasks, "transfer"] if device.type == "cuda" else ():  # CUDA's sync debug mode: nothing to count on a CPU
        waits, steps, first = count_host_waits(task, args.arch, args.size, device, work / "sync")
        print(f"RESULT host waits {task:10s} {waits} in {steps} steps" + (f" (first: {first})" if first else ""))
    common = dict(data="sample", arch=args.arch, size=args.size, seed=0, device="auto", comet="off", resume=False)
    runs_dir = work / "runs"
    for i, task in enumerate(args.tasks):
        cfg = resolve("pretrain", {**common, "task": task, "task_params": {}, "epochs": args.epochs, "bs": 128,
                                          "lr": 0, "grad_stats": False, "version": f"v{i + 1}"})
        run_dir = runs_dir / f"v{i + 1}"
        run_dir.mkdir(parents=True)
        r = run_pretrain(cfg, run_dir)
        on_gpu = next(r["model"].parameters()).device.type
        print(f"RESULT pretrain {task:10s} val {r['task'].metric_name} {r['val_metric']:.3f} (chance {r['chance']:.3f}) "
              f"{r['images_per_s']:.0f} img/s, params on {on_gpu}, {r['wall_s']:.1f}s")
    for source in ("v1", "none"):
        cfg = resolve("transfer", {**common, "from_version": source, "epochs": 5, "bs": 64, "lr": 0, "runs": 1,
                                          "version": f"t-{source}"})
        run_dir = runs_dir / f"t-{source}"
        run_dir.mkdir(parents=True)
        r = run_transfer(cfg, run_dir, runs_dir)
        print(f"RESULT transfer from {source:5s} val_acc {r['val_acc']:.3f} ({r['wall_s']:.1f}s)")
    return 0


def count_host_waits(task_name, arch, size, device, folder, n_images=96, batch_size=32):
    """Warnings from torch.cuda.set_sync_debug_mode over the steps of one epoch after a warm-up step: the
    resident loader, the augmentation, the task batch and fit's own training step (imgwang.train.step: hooks,
    forward and loss under autocast, backward, optimiser, schedule) with fit's defaults, then the metric."""
    import warnings

    import numpy as np
    import torch
    from PIL import Image

    from imgwang.data.augment import make_augment
    from imgwang.data.cache import build_cache
    from imgwang.data.loader import CachedLoader
    from imgwang.evaluate.objective import Classification
    from imgwang.models.classifier import Classifier
    from imgwang.models.encoders import create_encoder
    from imgwang.tasks import get_task
    from imgwang.train import FitSettings
    from imgwang.train.step import TrainStep

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_images):
        if not (folder / f"{i}.png").exists():
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cache = build_cache(sorted(folder.glob("*.png")), size, folder / "cache", progress=False)
    loader = CachedLoader(cache, np.arange(n_images), np.arange(n_images) % 3, batch_size=batch_size, device=device,
                          resident=True, augment=make_augment(size, "pretrain"))
    if task_name == "transfer":  # fine-tuning: the classification objective on labelled rows
        task, model = Classification(3), Classifier(create_encoder(arch), 3)
    else:
        task = get_task(task_name)
        model = task.build_model(create_encoder(arch))
    settings = FitSettings(epochs=1, lr=1e-3, device=device, progress=False)
    train_step = TrainStep(model, task, settings, total_steps=len(loader), steps_per_epoch=len(loader))
    gen = torch.Generator(device=device).manual_seed(0)
    counter = iter(range(len(loader)))

    def step(batch):
        inputs, targets = train_step.prepare(batch, gen)
        outputs, _, _ = train_step.train(inputs, targets, next(counter))
        task.metric(outputs, targets)

    batches = iter(loader)
    step(next(batches))  # warm-up: the epoch's set-up and per-device constants happen once
    torch.cuda.synchronize()
    steps = 0
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for batch in batches:
                step(batch)
                steps += 1
    finally:
        torch.cuda.set_sync_debug_mode("default")
    first = str(caught[0].message).splitlines()[0][:160] if caught else ""
    return len(caught), steps, first


if __name__ == "__main__":
    sys.exit(main())
