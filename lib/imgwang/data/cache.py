"""The decode-once image cache: every image decoded once into one memory-mapped uint8 file.

Rows are stored pixel-interleaved, (N, S, S, 3), and shown as (N, 3, S, S) through a transposed view:
a gathered batch is then a channels-last tensor for free, which is the layout the CPU's uint8 resize
kernel works in (1.4x faster than handing it planar images, measured on the 2-core bench machine).

Layout in `cache_dir`, all named by a key hashed from (format version, size, the sorted file list with
each file's byte size and mtime):

    <key>.u8           raw uint8 rows (N, S, S, 3), C order
    <key>.json         kept paths (row order), skipped (path, reason), size, each row's digest (exact copies
                       between splits are found by it: imgwang.data.copies); written last = the commit mark
    <key>.skipped.txt  the human-readable report

A build decodes into `<key>.<pid>.*.tmp` files and moves them into place (imgwang.core.atomic) only when complete
(data first, json last), so a build killed at any point leaves nothing that later loads as a cache; the next build
removes temporary files whose process is gone. Before decoding, the bytes the cache needs are checked
against the free disk space. A decode worker that dies (OOM killer, SIGBUS on a full disk) breaks the
process pool, which ends the build at once with one error line instead of waiting for it forever.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import DataError
from ..core.progress import text_bar
from ..core.threads import process_budget
from .images import BadImageError, load_rgb

FORMAT_VERSION = 3  # 2: rows stored (S, S, 3); 3: photos turned upright by their EXIF orientation, row digests
CHUNK = 64  # images per worker task: big enough to amortise IPC, small enough for a live progress bar
POOL_MIN_IMAGES = 256  # below this a worker pool costs more to start than it saves


class ImageCache:
    """A read-only view of a built cache: `.pixels` is the np.memmap (N, S, S, 3) uint8 opened with mode='r',
    `.array` the same memory seen as (N, 3, S, S)."""

    def __init__(self, data_path: Path, meta: dict):
        self.key = meta["key"]
        self.size = int(meta["size"])
        self.paths = [Path(p) for p in meta["paths"]]
        self.skipped = [(Path(p), reason) for p, reason in meta["skipped"]]
        self.data_path = Path(data_path)
        self.pixels = np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=(len(self.paths), self.size, self.size, 3))
        self.array = planar(self.pixels)
        self._row = {_norm(p): i for i, p in enumerate(self.paths)}
        self.digests: list[str] | None = meta.get("digests")  # row i's pixels hashed (row_digests); None: made by hand

    def __len__(self) -> int:
        return len(self.paths)

    def row_of(self, path) -> int | None:
        """Row index of an image file, or None if it is not in the cache (skipped or never listed)."""
        return self._row.get(_norm(path))

    def report(self) -> str:
        total = len(self.paths) + len(self.skipped)
        lines = [f"image cache {self.key}: {len(self.paths)} of {total} images kept at {self.size}x{self.size}, "
                 f"{len(self.skipped)} skipped"]
        lines += [f"  skipped {p}: {reason}" for p, reason in self.skipped]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ImageCache({len(self)} images, size={self.size}, skipped={len(self.skipped)}, file={self.data_path})"


def build_cache(paths, size: int, cache_dir, progress: bool = True, workers: int | None = None) -> ImageCache:
    """Decode `paths` once into a memory-mapped cache in `cache_dir`, or reuse the one already built for them.

    Rows follow the sorted paths, minus unreadable files (listed in `.skipped` with a reason).
    `workers` defaults to the stage's share of the cores (imgwang.core.threads.process_budget); small lists are
    decoded in this process.
    """
    size = int(size)
    if size < 1:
        raise DataError(f"cache image size must be a positive number of pixels, got {size}")
    files = sorted({_norm(p) for p in paths})
    if not files:
        raise DataError("no image files given to build the cache from")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(files, size)
    data_path, meta_path = cache_dir / f"{key}.u8", cache_dir / f"{key}.json"

    cache = _open_existing(data_path, meta_path)
    if cache is not None:
        return cache

    remove_stale_temp_files(cache_dir)
    check_disk_space(cache_dir, len(files), size)
    tmp_data = cache_dir / f"{key}.{os.getpid()}.u8.tmp"
    tmp_meta = cache_dir / f"{key}.{os.getpid()}.json.tmp"
    with atomic.replacing(data_path, temp=tmp_data):
        kept, skipped = _decode_all(files, size, tmp_data, progress, workers)
        if not kept:
            first = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
            raise DataError(f"none of the {len(files)} files could be read as an image (e.g. {first})")
        digests = row_digests(tmp_data, len(kept), size)
    meta = {"version": FORMAT_VERSION, "key": key, "size": size, "paths": kept, "skipped": skipped, "digests": digests}
    atomic.write_json(meta_path, meta, temp=tmp_meta)  # last: only now does the cache exist

    cache = ImageCache(data_path, meta)
    (cache_dir / f"{key}.skipped.txt").write_text(cache.report() + "\n")
    return cache


def row_digests(data_path: Path, n: int, size: int) -> list[str]:
    """A 64-bit BLAKE2b digest of each stored row: equal digests, the same decoded picture."""
    pixels = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
    return [hashlib.blake2b(pixels[i], digest_size=8).hexdigest() for i in range(n)]


def storage_size(size: int) -> int:
    """Side of the decode-once cache for images used at SIZE: a little above it, so random crops keep detail."""
    return int(round(size * 1.25))


def cache_bytes(n_images: int, size: int) -> int:
    return n_images * 3 * size * size


def check_disk_space(cache_dir: Path, n_images: int, size: int) -> None:
    """One line before decoding when the cache cannot fit on the disk holding `cache_dir`."""
    needed, free = cache_bytes(n_images, size), shutil.disk_usage(cache_dir).free
    if needed > free:
        raise DataError(f"the image cache for {n_images} images at {size}x{size} px needs {needed / 1e9:.2f} GB, "
                        f"only {free / 1e9:.2f} GB free in {cache_dir}: use a smaller SIZE or free some space")


TEMP_RE = re.compile(r"^[0-9a-f]+\.(\d+)\.(u8|json)\.tmp$")


def remove_stale_temp_files(cache_dir: Path) -> list[Path]:
    """Temporary files of builds whose process is gone (killed mid-build): full-size, and never used again."""
    removed = []
    for path in Path(cache_dir).glob("*.tmp"):
        m = TEMP_RE.match(path.name)
        if m and not _alive(int(m.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's live process
        return True
    return True


def planar(pixels: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) rows seen as (N, 3, S, S) images, without a copy."""
    return pixels.transpose(0, 3, 1, 2)


def cache_key(files: list[str], size: int) -> str:
    """Hash of what the cache content depends on; a missing file hashes as such (and is skipped later)."""
    h = hashlib.sha256(f"imgwang-cache v{FORMAT_VERSION} size={size}\n".encode())
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\tmissing\n".encode())
    return h.hexdigest()[:20]


def _norm(path) -> str:
    return os.path.abspath(os.fspath(path))


def _open_existing(data_path: Path, meta_path: Path) -> ImageCache | None:
    """The cache if it is complete and consistent, else None (then it is rebuilt)."""
    if not (data_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        expected = len(meta["paths"]) * 3 * int(meta["size"]) ** 2
        if meta.get("version") != FORMAT_VERSION or data_path.stat().st_size != expected:
            return None
        return ImageCache(data_path, meta)
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _decode_all(files, size, tmp_data: Path, progress, workers):
    """Decode every file into row i of a fresh memmap, then compact the good rows to the front."""
    n = len(files)
    arr = planar(np.memmap(tmp_data, dtype=np.uint8, mode="w+", shape=(n, size, size, 3)))
    reasons: dict[int, str] = {}
    workers = workers or process_budget()  # the stage's share of the cores (all of them outside a stage)
    chunks = [list(range(i, min(i + CHUNK, n))) for i in range(0, n, CHUNK)]
    with text_bar(total=n, desc=f"decoding images at {size}px", unit="img", disable=not progress) as bar:
        if workers <= 1 or n < POOL_MIN_IMAGES:
            for chunk in chunks:
                reasons.update(_decode_into(arr, files, chunk, size))
                bar.update(len(chunk))
        else:
            arr.flush()
            ctx = pool_context()
            args = [(str(tmp_data), n, size, [(i, files[i]) for i in chunk]) for chunk in chunks]
            for chunk_reasons, done in _run_pool(workers, ctx, args):
                reasons.update(chunk_reasons)
                bar.update(done)
    kept_rows = [i for i in range(n) if i not in reasons]
    for dst, src in enumerate(kept_rows):  # dst <= src, so copying in order never overwrites a pending row
        if dst != src:
            arr[dst] = arr[src]
    arr.flush()
    del arr
    os.truncate(tmp_data, len(kept_rows) * 3 * size * size)
    skipped = [(files[i], reasons[i]) for i in sorted(reasons)]
    return [files[i] for i in kept_rows], skipped


def _run_pool(workers, ctx, args):
    """Yield the workers' results as they finish. A worker that dies breaks the pool: every pending
    future then raises BrokenProcessPool at once, which ends the build with one line."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        pending = {pool.submit(_decode_chunk_in_worker, a) for a in args}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    except BrokenProcessPool:
        raise DataError("an image decoding worker died (killed for memory, or a disk error); the cache was not "
                        "built: run it again, with a smaller SIZE or more free memory if it recurs") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_into(arr, files, rows, size) -> dict[int, str]:
    reasons = {}
    for i in rows:
        try:
            arr[i] = load_rgb(files[i], size)
        except BadImageError as e:
            reasons[i] = e.reason
    return reasons


def pool_context():
    """fork where it is safe: workers start at once and never re-run the caller's script (spawn re-imports
    `__main__`, which loops in any script without an `if __name__ == "__main__"` guard). Once CUDA is live
    in this process, spawn: a forked CUDA context is unusable."""
    torch = sys.modules.get("torch")
    cuda_live = torch is not None and torch.cuda.is_initialized()
    if "fork" in mp.get_all_start_methods() and not cuda_live:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _decode_chunk_in_worker(args):
    """Pool task: decode a chunk straight into the shared memmap file; return only the failures."""
    tmp_data, n, size, items = args
    arr = planar(np.memmap(tmp_data, dtype=np.uint8, mode="r+", shape=(n, size, size, 3)))
    files = dict(items)
    reasons = _decode_into(arr, files, [i for i, _ in items], size)
    arr.flush()
    return reasons, len(items)
