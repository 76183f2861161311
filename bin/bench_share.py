#!/usr/bin/env python
"""make bench: do two pretraining runs side by side share the machine, or collapse?

Times one pretraining step loop (cache -> augment -> task -> fit's own training step, imgwang.train.step)
alone, then two such loops at once in two processes, over the same wall-clock window. Each process is a
stage as far as imgwang.core.threads knows: it enters the machine-wide registry and takes its share of the cores
(cores // stages running), as the stages do. Alone and together alternate `--repeats` times, so a change in
the machine's other load falls on both alike.

The last line is `concurrent_share: X`: the two runs' images per second added up, divided by the run alone
(1.0: the machine does as much work for two runs as for one; each process on all cores gave about 0.2 on a
2-core machine). `--rules share,all` also times each process on all cores, as before the share rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ("share", "all")
SCHEDULE_STEPS = 1_000_000  # the lr schedule's length: longer than any timed window


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--task", default="patchwork")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20.0, help="timed window of each measurement")
    p.add_argument("--repeats", type=int, default=3, help="alone / together pairs, alternated")
    p.add_argument("--rules", default="share", help="share (each process its share of the cores), all (each "
                   "process on all cores, as before), or both: share,all")
    p.add_argument("--omp-wait-policy", default="", help="OMP_WAIT_POLICY for the timed processes (PASSIVE, "
                   "ACTIVE; default: unset)")
    p.add_argument("--registry", default="", help="registry folder (default: the machine-wide one, so other "
                   "stages running now count)")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)  # the cache file: run one timed loop
    p.add_argument("--rule", default="share", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    if not rules or any(r not in RULES for r in rules):
        p.error(f"--rules takes share, all or share,all; got {args.rules!r}")
    if args.seconds <= 0 or args.repeats < 1:
        p.error("--seconds must be > 0 and --repeats >= 1")
    args.rule_list = rules
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from imgwang.core import threads

    with tempfile.TemporaryDirectory(prefix="imgwang-bench-share-") as work:
        cache_path = write_cache(Path(work), args.size)
        print(f"{threads.cores()} cores; {args.arch} {args.task} at {args.size} px, batch {args.batch_size}; "
              f"{args.seconds:g} s windows, {args.repeats} repeats; OMP_WAIT_POLICY "
              f"{args.omp_wait_policy or 'unset'}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
              flush=True)
        ratios = {}
        for rule in args.rule_list:
            alone, together, ratio = [], [], []
            for r in range(args.repeats):
                (a,) = timed(args, cache_path, rule, 1)
                pair = timed(args, cache_path, rule, 2)
                alone.append(a["img_s"])
                together.append(sum(x["img_s"] for x in pair))
                ratio.append(together[-1] / alone[-1])
                print(f"  {rule} {r + 1}: alone {a['img_s']:.1f} img/s ({a['threads']} threads); together "
                      + " + ".join(f"{x['img_s']:.1f}" for x in pair)
                      + f" img/s ({', '.join(str(x['threads']) for x in pair)} threads); ratio {ratio[-1]:.2f}",
                      flush=True)
            ratios[rule] = ratio
            print(f"{rule}: alone {mean_sd(alone)} img/s, two at once {mean_sd(together)} img/s in all, "
                  f"concurrent share {mean_sd(ratio, 2)} (n={len(ratio)})", flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        main_rule = "share" if "share" in ratios else args.rule_list[0]
        print(f"concurrent_share: {statistics.mean(ratios[main_rule]):.2f}")
    return 0


def mean_sd(values, digits=1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def write_cache(folder: Path, size: int, n: int = 512) -> Path:
    """A synthetic uint8 cache (smooth random images) at the storage size the stages use for `size`."""
    import numpy as np

    from imgwang.data.cache import storage_size

    store = storage_size(size)
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.float32)
    reps = -(-store // 6)
    pixels = np.repeat(np.repeat(low, reps, 1), reps, 2)[:, :store, :store]
    pixels = (pixels + rng.normal(0, 12, pixels.shape)).clip(0, 255).astype(np.uint8)
    data = folder / "cache.u8"
    pixels.tofile(data)
    (folder / "cache.json").write_text(json.dumps({"key": "bench-share", "size": store, "skipped": [],
                                                   "paths": [f"/synthetic/{i:04d}.png" for i in range(n)]}))
    return data


def timed(args, cache_path: Path, rule: str, n: int) -> list[dict]:
    """Start n worker processes, let each get ready (model built, registered, warmed up), then time them
    over the same window; returns their results."""
    env = dict(os.environ)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    if args.registry:
        env["IMGWANG_STAGE_REGISTRY"] = args.registry
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(cache_path), "--rule", rule,
           "--arch", args.arch, "--task", args.task, "--size", str(args.size), "--batch-size", str(args.batch_size),
           "--seconds", str(args.seconds)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(n)]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a timed process did not start (said {line!r}; exit {p.wait()})")
        start = time.time() + 0.5  # both begin their window together
        for p in procs:
            p.stdin.write(f"{start}\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=args.seconds * 10 + 300)
            if p.returncode:
                raise RuntimeError(f"a timed process failed (exit {p.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def worker(args) -> int:
    """One timed step loop; says `ready`, waits for the start time on stdin, prints its result as JSON."""
    import numpy as np
    import torch

    from imgwang.core import threads
    from imgwang.data.augment import make_augment
    from imgwang.data.cache import ImageCache
    from imgwang.data.loader import CachedLoader
    from imgwang.models.encoders import create_encoder
    from imgwang.tasks import get_task
    from imgwang.train import FitSettings
    from imgwang.train.step import TrainStep

    if args.rule == "share":  # as a stage does at its start
        threads.start_stage(device="cpu", say=lambda line: None)
    meta = json.loads(Path(args.worker).with_suffix(".json").read_text())
    cache = ImageCache(Path(args.worker), meta)
    torch.manual_seed(0)
    task = get_task(args.task)
    model = task.build_model(create_encoder(args.arch))
    train_step = TrainStep(model, task, FitSettings(epochs=1, lr=1e-3, device="cpu"), SCHEDULE_STEPS, SCHEDULE_STEPS)
    counter = itertools.count()
    loader = CachedLoader(cache, np.arange(len(cache)), batch_size=args.batch_size,
                          augment=make_augment(args.size, "pretrain"))
    gen = torch.Generator().manual_seed(0)

    def batches():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    feed = batches()

    def step() -> int:
        threads.refresh_share(only_if_changed=True)  # as fit does at every step
        batch = next(feed)
        train_step.train(*train_step.prepare(batch, gen), next(counter))  # fit's own step, fit's defaults
        return len(batch)

    step()
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    end = start + args.seconds
    threads.refresh_share()  # the other process is registered by now
    while time.time() < start:  # warm up at the new thread count until the common start
        step()
    # Only steps that end by the common end count (the first one always): a process that finishes its last
    # step later (and leaves the registry) never changes what the other measured.
    images, used, t0 = 0, set(), time.time()
    t_last = t0
    while True:
        n = step()
        now = time.time()
        if now > end and images:  # (one step at least, when a step outlasts the window)
            break
        images, t_last = images + n, now
        used.add(torch.get_num_threads())
    rate = images / (t_last - t0)
    print(json.dumps({"img_s": rate, "threads": "/".join(map(str, sorted(used))), "pid": os.getpid()}), flush=True)
    feed.close()  # stops the loader's prefetch thread
    threads.unregister()
    os._exit(0)  # a daemon thread still inside torch at interpreter teardown can abort the process (seen once)


if __name__ == "__main__":
    sys.exit(main())
