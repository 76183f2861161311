"""Checks of a resolved configuration against the machine and the files, all before compute (the values
themselves are checked by stages/resolve.py).

Each raises ConfigError with one line: a batch a task cannot make, a SIZE whose image cache cannot fit on the
disk or whose batch cannot fit in memory, data with file names that are not UTF-8, an encoder that cannot take
SIZE or the task's views, and an encoder saved from another architecture than the one it would be loaded into.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.errors import ConfigError, ImgwangError


def check_task_batch(task, bs: int, size: int) -> None:
    """Let the task make one batch of random images at the stage's batch size and image size (at most 64
    images: the limits tasks have, such as simclr's 2 or unmix's n_sources, are far below)."""
    import torch

    n = min(int(bs), 64)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, int(size), int(size), generator=generator)
    try:
        with torch.no_grad():
            task.make_batch(images, generator)
    except ImgwangError as e:
        raise ConfigError(f"TASK={task.name} with BS={bs} at SIZE={size}: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"TASK={task.name} cannot make a batch with BS={bs} at SIZE={size} and its parameters "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def check_enough_images(task, layout, pretrain_on_val: bool) -> None:
    """Pretraining and its pretext metric each need one batch the task can make (Task.min_batch images)."""
    from ..data.layout import HELD_OUT_EVERY

    total = len(layout.unlabelled()) + len(layout.val)
    held_out = -(-total // HELD_OUT_EVERY) if pretrain_on_val else len(layout.val)  # pretext_split's metric images
    for what, n in (("pretraining", total - held_out if pretrain_on_val else len(layout.unlabelled())),
                    ("the pretext metric", held_out)):
        if n < task.min_batch:
            raise ConfigError(f"TASK={task.name} makes batches of at least {task.min_batch} images, and {layout.root} "
                              f"has {n} for {what}: add images, or choose another task")


def check_dev_split(layout) -> None:
    """SPLIT=dev scores on a stratified fifth of train/ (data/split.py), which only a class of two or more images
    gives an image to: it must not be empty."""
    from ..data.split import dev_mask

    if not dev_mask([path for path, _ in layout.train], [label for _, label in layout.train]).any():
        raise ConfigError(f"SPLIT=dev: no class in {layout.root}/train has two images, so the dev fifth held out "
                          f"of it is empty; use SPLIT=val or add images")


def check_fits(n_images: int, size: int, storage: int, bs: int, cache_dir: Path) -> None:
    """The decode-once cache must fit on the disk, and one float batch in the machine's memory."""
    cache_dir = Path(cache_dir)
    probe = cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    # caches already there count as room: one of them may be this very cache, built before
    built = sum(p.stat().st_size for p in cache_dir.glob("*.u8")) if cache_dir.is_dir() else 0
    need, free = n_images * 3 * storage * storage, shutil.disk_usage(probe).free + built
    if need > free:
        raise ConfigError(f"SIZE={size}: the image cache of {n_images} images needs {need / 1e9:.1f} GB on disk, "
                          f"{free / 1e9:.1f} GB free in {probe}; use a smaller SIZE or free some space")
    batch = 2 * bs * 3 * size * size * 4  # float32 inputs, at least two tensors of them alive at once
    total, where = host_memory()
    if total and batch > total:
        raise ConfigError(f"BS={bs} at SIZE={size}: one batch of images needs {batch / 1e9:.1f} GB, more than the "
                          f"{total / 1e9:.1f} GB of {where}; use a smaller BS or SIZE")


def host_memory() -> tuple[int, str]:
    """Total memory a batch is first built in (0 when unknown): the host's. A GPU's is not asked for here:
    asking would start a CUDA context in this process, which then holds GPU memory for the whole stage."""
    try:
        import psutil

        return psutil.virtual_memory().total, "this machine's memory"
    except ImportError:
        return 0, ""


def check_utf8_names(root: Path) -> None:
    """Every file and folder name below `root` is valid UTF-8 (run.json, caches and notebooks store paths as
    text; a name in another encoding would fail there, after compute has begun)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(os.path.join(folder, name))
                raise ConfigError(f"DATA={root}: the file name {shown!r} is not valid UTF-8; rename it "
                                  f"(e.g. with convmv) or move it out of the folder") from None


def check_encoder(arch: str, size: int, task=None) -> None:
    """The encoder `arch`, built for SIZE, takes every input side it will get (SIZE, and a view-making task's
    smaller views) and gives a pooled feature (models.encoders.encoder_problem: shapes only, nothing computed)."""
    from ..models.encoders import encoder_problem

    def sides_at(side: int) -> list:
        return task.view_sides(side) if hasattr(task, "view_sides") else []

    problem = encoder_problem(arch, int(size), *sides_at(int(size)))
    if problem:
        fits = smallest_size_that_fits(arch, int(size), sides_at)
        raise ConfigError(problem + (f"; SIZE={fits} would work" if fits else ""))


def smallest_size_that_fits(arch: str, size: int, sides_at, limit: int = 1024) -> int | None:
    """The smallest SIZE above `size`, a multiple of 8, at which `arch` takes SIZE and the task's views (`sides_at`),
    found by doubling, then halving the gap (shapes only, on the meta device); None when none up to `limit` does
    (an encoder that cannot be built, or one whose working sizes have gaps). Assumes a size that works keeps
    working above it; the answer itself is always checked."""
    from ..models.encoders import encoder_problem

    def fits(eighths: int) -> bool:
        return encoder_problem(arch, 8 * eighths, *sides_at(8 * eighths)) is None

    low, high = size // 8, size // 8 + 1  # in units of 8 px; the answer lies above 8 * low, at or below 8 * high
    while not fits(high):
        low, high = high, 2 * high
        if 8 * high > limit:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return 8 * high


def check_encoder_arch(path: Path, arch: str, source: str) -> None:
    """The encoder in `path` loads into a fresh `arch` encoder (same keys, same shapes)."""
    from ..models.checkpoint import load_encoder
    from ..models.encoders import create_encoder

    try:
        load_encoder(create_encoder(arch), path)
    except ImgwangError as e:
        raise ConfigError(f"FROM={source}: {str(e).splitlines()[0]}") from None
