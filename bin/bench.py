"""make bench: throughput of the decode-once data path beside the plain torchvision path, in one run.

On the same generated JPEGs (shaped like Imagewang-160, 213x160) and the same transforms
(RandomResizedCrop + horizontal flip + to float at --size):
  1. baseline     torchvision ImageFolder + PIL + DataLoader(num_workers = cores)
  2. host feed    uint8 batches gathered from the decode-once cache (what the host does per batch)
  3. device path  cache -> device -> per-sample augment -> float batch
  4. fit's own training step (imgwang.train.step) fed by the loader and the task (full) vs the same step
     code on a plain timm model and ready tensors of the same shape with the task's loss (bare: the model's
     forward, backward and optimiser alone), each timed over back-to-back steps as training runs them (on a
     GPU also with a sync around each step); full / bare = what the data path and the task add
  5. every pretext task's batches (augment + make_batch) from one uint8 batch on the device
  6. each method's pretraining step as fit() runs it (its own loader path, views, model, loss, optimiser,
     hooks such as an EMA teacher), in source images per second (each image counted once, however many
     views it gives), beside fit's step on a plain supervised timm model of the same architecture
     (cross-entropy, ready tensors)
plus a synthetic cache the size of full Imagewang-160 (26k x 3 x 160 x 160, ~2 GB) read as a memory map.
Each throughput is the best of three passes, for every path alike.
The last three lines are the ratios, exactly: host_feed_speedup, device_path_speedup, step_overhead.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# torch and friends are imported in main(): the cache's spawned decode workers re-import this script as
# __mp_main__, and should not pay for a torch import each.
torch = F = Image = make_augment = ImageCache = build_cache = CachedLoader = resolve_device = FitSettings = TrainStep = None


def _import_heavy() -> None:
    global torch, F, Image, make_augment, ImageCache, build_cache, CachedLoader, resolve_device, FitSettings, TrainStep
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from imgwang.core.device import resolve_device
    from imgwang.data.augment import make_augment
    from imgwang.data.cache import ImageCache, build_cache
    from imgwang.data.loader import CachedLoader
    from imgwang.train import FitSettings
    from imgwang.train.step import TrainStep

SCALE = (0.35, 1.0)
STORE = 160  # storage size of the cache: Imagewang-160's shorter side


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--n-images", type=int, default=3000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on a GPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="(default: on a GPU)")
    p.add_argument("--big-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="also write and read a 26k x 3 x 160 x 160 memmap (~2 GB)")
    p.add_argument("--steps", type=int, default=0, help="timed model steps per measurement (default: 4 on CPU, 20 on GPU)")
    p.add_argument("--methods", default="simclr,swav,dino,byol,patchwork",
                   help="tasks timed through fit() in line 6 (comma-separated; empty: none)")
    p.add_argument("--work-dir", default=str(ROOT / ".cache" / "bench"))
    args = p.parse_args(argv)
    _import_heavy()

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    amp = gpu if args.amp is None else args.amp
    channels_last = gpu if args.channels_last is None else args.channels_last
    steps = args.steps or (20 if gpu else 4)
    cores = os.cpu_count() or 1
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"device {device} ({torch.cuda.get_device_name(device) if gpu else f'{cores} CPU cores'}), "
          f"torch threads {torch.get_num_threads()}, {args.n_images} images, size {args.size}, batch {args.batch_size}, "
          f"amp {amp}, channels_last {channels_last}", flush=True)
    try:
        t = time.perf_counter()
        folder = make_jpegs(work / "jpegs", args.n_images)
        print(f"generated {args.n_images} JPEGs 213x160 in {time.perf_counter() - t:.1f} s", flush=True)

        baseline = bench_baseline(folder, args.size, args.batch_size, cores)
        print(f"1. baseline ImageFolder+PIL+DataLoader({cores} workers): {baseline:,.0f} img/s", flush=True)

        t = time.perf_counter()
        files = sorted(folder.rglob("*.JPEG"))
        cache = build_cache(files, STORE, work / "cache", progress=False)
        build_s = time.perf_counter() - t
        print(f"   cache build (decode once, {cores} processes): {len(cache)} images in {build_s:.1f} s "
              f"= {len(cache) / build_s:,.0f} img/s, {cache.array.nbytes / 2**20:.0f} MiB", flush=True)

        host = bench_host_feed(cache, args.batch_size)
        print(f"2. host feed (uint8 batches from the cache): {host:,.0f} img/s", flush=True)

        dev = bench_device_path(cache, args.size, args.batch_size, device)
        print(f"3. device path (cache -> {device.type} -> augment -> float): {dev:,.0f} img/s", flush=True)

        if args.big_cache:
            bench_big_cache(work / "big", args.batch_size)

        archs = [args.arch] + (["resnet34d"] if gpu and args.arch != "resnet34d" else [])
        overheads = []
        for arch in archs:
            full, bare, task_name = bench_steps(cache, arch, args.size, args.batch_size, device, amp, channels_last, steps)
            overheads.append(full / bare)
            print(f"4. {arch} {task_name} fit step: full (loader + task) {args.batch_size / full:,.1f} img/s "
                  f"({full * 1000:.0f} ms), bare (timm model, ready tensors) {args.batch_size / bare:,.1f} img/s "
                  f"({bare * 1000:.0f} ms)", flush=True)

        rates = bench_task_batches(cache, args.size, args.batch_size, device)
        print("5. task batches (augment + task batch on the device, img/s): "
              + ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items()), flush=True)

        methods = [m for m in args.methods.split(",") if m]
        if methods:
            bare_rate, rates = bench_methods(cache, methods, args.arch, args.size, args.batch_size, device, amp,
                                             channels_last, steps)
            print(f"6. {args.arch} method steps through fit() (source img/s; x = bare step time ratio): "
                  + ", ".join(f"{name} {rate:,.1f} ({bare_rate / rate:.2f}x)" for name, rate in rates.items())
                  + f"; bare supervised fit step {bare_rate:,.1f}", flush=True)

        anon, mapped = rss_parts_mib()
        print(f"peak resident memory: {peak_rss_mib():,.0f} MiB (includes mapped cache pages; now "
              f"{anon:,.0f} MiB anonymous + {mapped:,.0f} MiB file-backed)")
        print(f"host_feed_speedup: {host / baseline:.2f}")
        print(f"device_path_speedup: {dev / baseline:.2f}")
        print(f"step_overhead: {overheads[0]:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the images ---------------------------------------------------------------------------------------------
def make_jpegs(folder: Path, n: int, classes: int = 10) -> Path:
    """n smooth-plus-noise 213x160 JPEGs in class folders (ImageFolder needs them): real JPEG decode cost."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((213, 160), Image.Resampling.BICUBIC), dtype=np.int16)
        img = (img + rng.integers(-12, 13, img.shape, dtype=np.int16)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"c{i % classes}" / f"{i:05d}.JPEG", quality=90)
    return folder


# --- 1. baseline --------------------------------------------------------------------------------------------
def bench_baseline(folder: Path, size: int, batch_size: int, workers: int) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(size, scale=SCALE), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor()])
    ds = datasets.ImageFolder(str(folder), transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    return _best_rate(lambda: iter(dl), lambda b: b[0].shape[0])


# --- 2. host feed -------------------------------------------------------------------------------------------
def bench_host_feed(cache: ImageCache, batch_size: int, epochs: int = 4) -> float:
    loader = CachedLoader(cache, np.arange(len(cache)), batch_size=batch_size)
    return _best_rate(lambda: (b for e in range(epochs) for b in loader.host_batches(e)), lambda b: b[0].shape[0])


# --- 3. device path -----------------------------------------------------------------------------------------
def bench_device_path(cache: ImageCache, size: int, batch_size: int, device, epochs: int = 2) -> float:
    loader = CachedLoader(cache, np.arange(len(cache)), batch_size=batch_size, device=device,
                          augment=make_augment(size, "pretrain", SCALE))

    def batches():
        for _ in range(epochs):
            for b in loader:
                yield b
        _sync(device)

    return _best_rate(batches, lambda b: len(b), sync=device)


# --- 5. every task's batches ---------------------------------------------------------------------------------
def bench_task_batches(cache, size, batch_size, device, batches: int = 8) -> dict[str, float]:
    """img/s of augment + make_batch per pretext task on one uint8 batch already on the device: which task's
    own work (views, patches, mixes) costs most beside the shared crop."""
    from imgwang.data.augment import to_float
    from imgwang.tasks import get_task, task_names

    loader = CachedLoader(cache, np.arange(len(cache)), batch_size=batch_size, device=device)
    uint8 = next(iter(loader.host_batches(0)))[0].to(device)
    crop = make_augment(size, "pretrain", SCALE)
    gen = torch.Generator(device=device).manual_seed(0)
    rates = {}
    for name in task_names():
        task = get_task(name)
        if task.makes_views:  # as in the stage: the whole image, views at SIZE
            task.view_size, augment = size, lambda x, g: to_float(x)
        else:
            augment = crop
        rates[name] = _best_rate(lambda task=task, augment=augment: (task.make_batch(augment(uint8, gen), gen) for _ in range(batches + 1)),
                                 lambda _: batch_size, sync=device)
    return rates


# --- 6. each method's step through fit() --------------------------------------------------------------------
def bench_methods(cache, methods, arch, size, batch_size, device, amp, channels_last, steps):
    """(bare supervised img/s, {method: img/s}). Each method trains 2 epochs of `steps` batches with fit() on
    the loader path the pretraining stage gives it; the second epoch's rate is fit's own measurement (the
    first carries the warm-up). The bare step: fit's step on timm `arch`, cross-entropy on ready tensors."""
    from imgwang.models.encoders import create_encoder
    from imgwang.tasks import get_task
    from imgwang.train import fit

    rows = np.arange(min(len(cache), steps * batch_size))
    settings = _settings(device, amp, channels_last, epochs=2)
    rates = {}
    for name in methods:
        task = get_task(name)
        whole = task.makes_views
        if whole:
            task.view_size = size
        torch.manual_seed(0)
        model = task.build_model(create_encoder(arch))
        loader = CachedLoader(cache, rows, batch_size=batch_size, device=device,
                              augment=None if whole else make_augment(size, "pretrain", SCALE))
        history = fit(model, task, loader, None, settings)
        rates[name] = history[-1]["images_per_s"]
        del model
    y = torch.randint(0, 10, (batch_size,), device=device)
    bare = _bare_step(arch, 10, (batch_size, 3, size, size), y, F.cross_entropy, settings)
    return batch_size / _step_time(bare, steps, device), rates


# --- the big memory map -------------------------------------------------------------------------------------
def bench_big_cache(folder: Path, batch_size: int, n: int = 26_000, batches: int = 100) -> None:
    """Write a full-Imagewang-160-sized cache file with plain writes, then read random batches via the memmap."""
    folder.mkdir(parents=True)
    data = folder / "big.u8"
    row = 3 * STORE * STORE
    block = np.random.default_rng(0).integers(0, 256, (512, row), dtype=np.uint8)
    t = time.perf_counter()
    with open(data, "wb") as f:
        for start in range(0, n, 512):
            k = min(512, n - start)
            f.write((block[:k] ^ np.uint8(start // 512 % 256)).tobytes())  # rows differ block to block
    write_s = time.perf_counter() - t
    meta = {"key": "synthetic", "size": STORE, "paths": [f"/synthetic/{i:05d}.JPEG" for i in range(n)], "skipped": []}
    cache = ImageCache(data, meta)
    anon0, file0 = rss_parts_mib()
    loader = CachedLoader(cache, np.arange(n), batch_size=batch_size)
    it = (b for _, b in zip(range(batches), loader.host_batches(0)))
    rate = _rate(it, lambda b: b[0].shape[0])
    anon1, file1 = rss_parts_mib()
    print(f"   big cache: {n} x 3 x {STORE} x {STORE} memmap = {data.stat().st_size / 2**30:.2f} GiB written in "
          f"{write_s:.1f} s; {batches} random batches of {batch_size} read at {rate:,.0f} img/s; process memory "
          f"(anonymous) {anon0:,.0f} -> {anon1:,.0f} MiB; mapped page cache {file0:,.0f} -> {file1:,.0f} MiB "
          f"(shared with the kernel's file cache, dropped under memory pressure, not a copy)", flush=True)
    del cache, loader
    data.unlink()


# --- 4. full step vs bare model step ------------------------------------------------------------------------
def bench_steps(cache, arch, size, batch_size, device, amp, channels_last, steps):
    """Seconds per fit step fed by the loader and the task, and per fit step of a plain timm model on ready
    tensors of the same shape with the task's loss (see the module docstring, line 4)."""
    torch.manual_seed(0)
    task, model, task_name = _task_and_model(arch)
    settings = _settings(device, amp, channels_last)
    loader = CachedLoader(cache, np.arange(len(cache)), batch_size=batch_size, device=device,
                          augment=make_augment(size, "pretrain", SCALE))
    step = TrainStep(model, task, settings, total_steps=BENCH_STEPS, steps_per_epoch=len(loader))
    gen = torch.Generator(device=device).manual_seed(0)
    batches, counter = _endless(loader), itertools.count()
    shapes = {}

    def full_step():
        inputs, targets = step.prepare(next(batches), gen)
        step.train(inputs, targets, next(counter))
        shapes["inputs"], shapes["targets"] = inputs, targets

    full = _step_time(full_step, steps, device)
    full_synced = _synced_step_time(full_step, steps, device) if device.type == "cuda" else None
    n_out = _n_out(model, shapes["inputs"])
    bare_step = _bare_step(arch, n_out, shapes["inputs"].shape, shapes["targets"].detach(), task.loss, settings)
    bare_s = _step_time(bare_step, steps, device)
    if full_synced is not None:
        bare_synced = _synced_step_time(bare_step, steps, device)
        print(f"   {arch} with the device synchronised around every step: full {full_synced * 1000:.1f} ms, "
              f"bare {bare_synced * 1000:.1f} ms, ratio {full_synced / bare_synced:.3f}", flush=True)
    return full, bare_s, task_name


BENCH_STEPS = 1_000_000  # the schedule's length: longer than any bench, so every timed step steps it


def _settings(device, amp, channels_last, epochs=1):
    """fit's defaults (AdamW, one-cycle) at the bench's precision and memory format."""
    return FitSettings(epochs=epochs, lr=1e-3, device=device, amp="bf16" if amp else "off",
                       channels_last=channels_last, progress=False)


class _LossOnly:
    """An objective with only a loss: the bare step runs none of a task's batch making or hooks."""

    def __init__(self, loss):
        self.loss = loss


def _bare_step(arch, n_out, x_shape, y, loss, settings):
    """fit's step on a plain timm model with fixed ready inputs: the model's forward, backward and optimiser
    step, with no loader, augmentation or task batch."""
    import timm

    step = TrainStep(timm.create_model(arch, pretrained=False, num_classes=n_out), _LossOnly(loss), settings,
                     total_steps=BENCH_STEPS, steps_per_epoch=1)
    x = step.place(torch.rand(x_shape, device=step.device))
    counter = itertools.count()
    return lambda: step.train(x, y, next(counter))


def _task_and_model(arch):
    """rotation (or patchwork) on our encoder when those exist; else a plain classification step on timm."""
    try:
        from imgwang.models.encoders import create_encoder
        from imgwang.tasks import get_task

        for name in ("rotation", "patchwork"):
            try:
                task = get_task(name)
                return task, task.build_model(create_encoder(arch)), name
            except Exception as e:  # noqa: BLE001 - a task still being written: try the next
                print(f"   (task {name} unavailable: {e})")
    except ImportError as e:
        print(f"   (tasks/encoders unavailable: {e})")
    import timm

    class _Classify:
        def prepare(self, batch, generator):
            return batch.images, batch.indices % 10, {}

        def loss(self, outputs, targets):
            return F.cross_entropy(outputs, targets)

    return _Classify(), timm.create_model(arch, pretrained=False, num_classes=10), "classification"


def _n_out(model, inputs) -> int:
    model.eval()  # a head with BatchNorm cannot run on one image in training mode
    with torch.no_grad():
        return int(model(inputs[:2]).shape[-1])


def _endless(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _step_time(step, steps, device, warmup=2) -> float:
    """Seconds per step over `steps` back-to-back steps, the device synchronised only before and after, as
    in training (the loop never waits on the GPU per step, so the host prepares the next batch while the
    GPU still computes). On the CPU every step is synchronous anyway."""
    for _ in range(warmup):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t) / steps


def _synced_step_time(step, steps, device) -> float:
    """Median seconds of one step with the device synchronised around each: nothing of the host's work
    hides behind the GPU's (printed beside the steady-state figure on a GPU)."""
    times = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- helpers ------------------------------------------------------------------------------------------------
REPEATS = 3


def _best_rate(make_iterator, count, sync=None, repeats: int = REPEATS) -> float:
    """The best of `repeats` timed passes: every path gets the same treatment, and the best pass is the
    one least disturbed by other work on a shared machine (single passes varied by 30% here)."""
    return max(_rate(make_iterator(), count, sync) for _ in range(repeats))


def _rate(iterator, count, sync=None) -> float:
    """Images/s over an iterator, timed from the first item on (worker start-up and warm-up excluded)."""
    first = next(iterator)
    del first
    if sync is not None:
        _sync(sync)
    n, t = 0, time.perf_counter()
    for item in iterator:
        n += count(item)
    return n / (time.perf_counter() - t)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def rss_parts_mib() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory: memmap pages count as file-backed, copies as anonymous."""
    parts = {"RssAnon": float("nan"), "RssFile": float("nan")}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in parts:
                parts[key] = int(line.split()[1]) / 1024
    return parts["RssAnon"], parts["RssFile"]


if __name__ == "__main__":
    main()
