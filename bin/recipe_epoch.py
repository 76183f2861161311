#!/usr/bin/env python
"""Time the leaderboard recipe on Imagewang-shaped generated data, through the stages' own functions.

    python bin/recipe_epoch.py --device cuda            # 26,348 images at 160 px, like Imagewang-160

Writes an Imagewang-layout folder of generated JPEGs (train/ 20 classes 14,669, unsup/ 7,750, val/ 10 classes
3,929; 213 x 160 like Imagewang-160), then runs the recipe's pretraining (imgwang.stages.recipe: SwAV multi-crop on
resnet34d, batch 128, adamw flat-cos, train + unsup + val) for --epochs epochs and its fine-tuning (ranger,
batch 64) for --ft-epochs, with the decode-once cache resident on the GPU and bf16 autocast (fit's defaults
on CUDA). Prints each epoch's seconds and the projection of the whole recipe from the last epoch of each:
100 pretraining epochs + 5 runs x 5 fine-tuning epochs. The goal: under 20 minutes on one H200.
--images scales the folder down for a dry run on a CPU (e.g. --images 300 --size 32 --arch resnet18).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IMAGEWANG = {"train": 14_669, "unsup": 7_750, "val": 3_929}
GOAL_S = 20 * 60


def write_image(job) -> None:
    """A smooth random picture plus noise, saved as JPEG: real decode cost, nothing to learn."""
    import numpy as np
    from PIL import Image

    path, seed = job
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((213, 160), Image.Resampling.BICUBIC), dtype=np.int16)
    img = (img + rng.integers(-12, 13, img.shape, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def make_folder(root: Path, n_images: int) -> dict[str, int]:
    """Imagewang's layout and proportions, n_images in all."""
    total = sum(IMAGEWANG.values())
    counts = {k: max(20, round(v * n_images / total)) for k, v in IMAGEWANG.items()}
    jobs = []
    for split, n in counts.items():
        for i in range(n):
            folder = root / split if split == "unsup" else root / split / f"c{i % (20 if split == 'train' else 10):02d}"
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((folder / f"{split}{i:05d}.JPEG", len(jobs)))
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(write_image, jobs, chunksize=256)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--images", type=int, default=sum(IMAGEWANG.values()))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--arch", default="")
    p.add_argument("--epochs", type=int, default=2, help="pretraining epochs (the first carries the warm-up)")
    p.add_argument("--ft-epochs", type=int, default=2)
    p.add_argument("--work-dir", default="")
    args = p.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="imgwang-recipe-"))
    os.environ.update(IMGWANG_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1")
    try:
        return run(args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> int:

    from imgwang.stages import recipe
    from imgwang.stages.pretrain import run_pretrain
    from imgwang.stages.resolve import resolve
    from imgwang.stages.stage_data import load_stage_data
    from imgwang.stages.transfer import run_transfer
    from imgwang.tasks import task_names, task_params

    t = time.perf_counter()
    counts = make_folder(work / "data", args.images)
    print(f"generated {sum(counts.values())} JPEGs {counts} in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    sd = load_stage_data(str(work / "data"), args.size, progress=False)
    print(f"decode-once cache: {len(sd.cache)} images at {sd.cache.array.shape[-1]} px in {time.perf_counter() - t:.1f} s "
          f"({sd.cache.array.nbytes / 2**30:.2f} GiB)", flush=True)

    pre = recipe.PRETRAIN
    accepted = task_params(pre["task"]) if pre["task"] in task_names() else {}  # task_names registers every task
    missing = sorted(set(pre["task_params"]) - set(accepted))
    if missing:  # an older swav: time what exists, and say what it lacks
        print(f"note: this {pre['task']} lacks the recipe's {', '.join(missing)}: timed without them", flush=True)
    common = {"data": str(work / "data"), "arch": args.arch or recipe.ARCH, "size": args.size, "seed": 0,
              "device": args.device, "comet": "off", "resume": False, "runs_dir": str(work / "runs")}
    cfg = resolve("pretrain", {**common, "task": pre["task"], "epochs": args.epochs, "bs": pre["bs"],
                                      "lr": pre["lr"], "knn_every": 0, "grad_stats": False, **pre["params"],
                                      "task_params": {k: v for k, v in pre["task_params"].items() if k in accepted}})
    run_dir = work / "runs" / "recipe"
    run_dir.mkdir(parents=True)
    result = run_pretrain(cfg, run_dir)
    pre_s = [h["seconds"] for h in result["history"]]
    print(f"RESULT pretrain epochs (s): {', '.join(f'{s:.1f}' for s in pre_s)}; last {result['history'][-1]['images_per_s']:,.0f} "
          f"img/s over {result['pretrain_images']} images, device {result['device']}", flush=True)

    ft = recipe.FINETUNE
    tcfg = resolve("transfer", {**common, "from_version": "recipe", "epochs": args.ft_epochs, "bs": ft["bs"],
                                       "lr": ft["lr"], "runs": 1, **ft["params"]})
    out = run_transfer(tcfg, run_dir, work / "runs")
    ft_s = [h["seconds"] for h in out["histories"][0]]
    print(f"RESULT fine-tune epochs (s): {', '.join(f'{s:.1f}' for s in ft_s)}", flush=True)

    total = pre["epochs"] * pre_s[-1] + ft["runs"] * ft["epochs"] * ft_s[-1]
    verdict = "within" if total <= GOAL_S else "over"
    print(f"RESULT recipe projection: {pre['epochs']} x {pre_s[-1]:.1f} s + {ft['runs'] * ft['epochs']} x {ft_s[-1]:.1f} s "
          f"= {total / 60:.1f} min at {args.size} px on {sum(counts.values())} images ({verdict} the goal of "
          f"{GOAL_S // 60} min on one H200; cache build and the kNN monitor not counted)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
