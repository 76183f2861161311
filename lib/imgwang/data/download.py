"""Fetch an Imagewang tarball once: download, verify, extract atomically, mark complete.

A folder counts as present only when its `.complete` marker exists (written last), so an interrupted
download or extraction is never mistaken for data. Verification happens on the archive before anything
is extracted, and extraction goes to a temporary folder beside the target that is renamed into place.

Verification, in order: the byte count against the Content-Length and fastai's published size; the MD5 of
the first MiB against fastai's published value (fastai/data/checks.txt pins exactly that: size and the MD5
of the first 2**20 bytes); the SHA-256 of the whole archive against the one recorded in
`<data root>/archives.json` (fastai publishes none: the first complete download records it, with a note,
and every later download of that URL must match); the whole gzip stream decompressed, so its CRC-32 and
length trailer are checked (a flipped byte anywhere in a member is caught here even on a first download);
the tar listing (one top folder, no links, no member outside, the expected image counts).

One download per data root at a time (a lock on the folder), each into a temporary file of its own.
"""

import contextlib
import errno
import fcntl
import gzip
import hashlib
import http.client
import json
import os
import time
import zlib
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm  # the text bar: a download runs before the notebook, in the terminal

from ..core import atomic, clock
from ..core.filelock import exclusive
from imgwang.data.layout import IMAGE_SUFFIXES
from ..core.errors import ConfigError, DataError

BASE_URL = "https://s3.amazonaws.com/fast-ai-imageclas"
DATASETS = {
    "imagewang": f"{BASE_URL}/imagewang-160.tgz",  # shortest side 160 px
    "imagewang-320": f"{BASE_URL}/imagewang-320.tgz",
    "imagewang-full": f"{BASE_URL}/imagewang.tgz",
}
# Published by fastai (fastai/data/checks.txt): archive size in bytes and MD5 of its first 2**20 bytes.
PUBLISHED = {
    f"{BASE_URL}/imagewang-160.tgz": (191498213, "dab9b1d97b95574ac64122a19bc74ca1"),
    f"{BASE_URL}/imagewang-320.tgz": (669826647, "fff8ac034d60e14fcf7789845e625263"),
    f"{BASE_URL}/imagewang.tgz": (2900347689, "2b7776bac0fc95db72ac8a3b091a3e30"),
}
HEAD_BYTES = 1 << 20
PINS = "archives.json"  # SHA-256 recorded per URL at its first verified download
# Image files per split in every Imagewang tarball (the three sizes hold the same images).
EXPECTED_COUNTS = {"train": 14669, "unsup": 7750, "val": 3929}
MARKER = ".complete"
SPLITS = ("train", "unsup", "val")
CHUNK = 1 << 20
TIMEOUT_S = 30


def folder_name(url: str) -> str:
    """The folder a tarball extracts to: imagewang-160.tgz -> imagewang-160."""
    base = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tgz", ".tar.gz", ".tar"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def is_complete(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def is_here(name: str, data_root: Path) -> bool:
    """The named dataset's folder is under data_root (fetched, or placed by hand): using it downloads nothing."""
    return name in DATASETS and (Path(data_root) / folder_name(DATASETS[name])).is_dir()


def count_images(relative_paths) -> dict[str, int]:
    """Image files per split, from paths relative to the dataset folder (train/<class>/x.jpg ...)."""
    counts = dict.fromkeys(SPLITS, 0)
    for rel in relative_paths:
        parts = PurePosixPath(rel).parts
        if len(parts) >= 2 and parts[0] in counts and PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES:
            if not any(p.startswith(".") for p in parts):
                counts[parts[0]] += 1
    return counts


def _count_on_disk(folder: Path) -> dict[str, int]:
    return count_images(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _mismatch(counts: dict[str, int], expected: dict[str, int]) -> str:
    """'' when the counts match, else e.g. 'train 3 images (expected 14669)'."""
    wrong = [f"{s} {counts.get(s, 0)} images (expected {n})" for s, n in expected.items() if counts.get(s, 0) != n]
    return ", ".join(wrong)


def _offline_error(url: str, target: Path, reason) -> DataError:
    return DataError(
        f"could not reach {url} ({reason}); download and extract it by hand to {target}/ "
        f"(with train/ val/ unsup/ inside), or pass DATA=/path/to/folder"
    )


class Digest:
    """SHA-256 of everything and MD5 of the first HEAD_BYTES, computed while the bytes stream by."""

    def __init__(self):
        self.sha256, self.head_md5, self.size = hashlib.sha256(), hashlib.md5(), 0

    def update(self, chunk: bytes) -> None:
        if self.size < HEAD_BYTES:
            self.head_md5.update(chunk[: HEAD_BYTES - self.size])
        self.sha256.update(chunk)
        self.size += len(chunk)


def _download(url: str, part: Path, target: Path, name: str, progress: bool, digest: Digest) -> int:
    """Stream `url` into `part`; returns bytes written. Network failures become one-line DataErrors."""
    opener = urllib.request.build_opener()  # built per call so proxy settings are read now
    written = 0
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            if total:
                check_free_space(part.parent, 2 * total, f"downloading and extracting {url}")
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"download {name}", disable=not progress, file=sys.stderr) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as e:
        raise DataError(f"download of {url} was cut short after {written} bytes ({e}); run it again") from None
    except urllib.error.HTTPError as e:
        raise _offline_error(url, target, f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _offline_error(url, target, e.reason) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _offline_error(url, target, str(e) or type(e).__name__) from None
    if total is not None and written != total:
        raise DataError(f"download of {url} was cut short: got {written} of {total} bytes; run it again")
    return written


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """One line before starting when `needed` bytes will not fit on the disk holding `folder`."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DataError(f"not enough disk space for {what}: needs about {needed / 1e9:.2f} GB, "
                        f"{free / 1e9:.2f} GB free in {folder}")


@contextlib.contextmanager
def disk_full_is_one_line(folder: Path, what: str):
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"disk full while {what} in {folder}: free some space and run it again") from None
        raise


def _check_gzip_stream(archive: Path, url: str) -> None:
    """Decompress the whole archive: gzip checks each member's CRC-32 and length at its end, which
    reading the tar listing alone may never reach."""
    with open(archive, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise DataError(f"{url} is not a readable .tgz archive (it does not start like a gzip file)")
    try:
        with gzip.open(archive, "rb") as stream:
            while stream.read(CHUNK):
                pass
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise DataError(f"{url} is corrupted (gzip stream: {e}); nothing was extracted, run it again") from None


def _check_pins(url: str, digest: Digest, pins: dict, expected_bytes: int | None, expected_sha256: str | None) -> None:
    published = PUBLISHED.get(url)
    if published and expected_bytes is None:
        expected_bytes = published[0]
    if expected_bytes is not None and digest.size != expected_bytes:
        raise DataError(f"{url} has {digest.size} bytes, expected {expected_bytes}: not the known archive")
    if published and digest.head_md5.hexdigest() != published[1]:
        raise DataError(f"{url}: MD5 of its first MiB is {digest.head_md5.hexdigest()}, fastai publishes "
                        f"{published[1]}: a corrupted or different archive")
    expected_sha256 = expected_sha256 or pins.get(url, {}).get("sha256")
    if expected_sha256 and digest.sha256.hexdigest() != expected_sha256:
        raise DataError(f"{url}: SHA-256 {digest.sha256.hexdigest()} differs from the pinned {expected_sha256}: "
                        f"a corrupted or different archive")


def read_pins(data_root: Path) -> dict:
    try:
        return json.loads((data_root / PINS).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise DataError(f"{data_root / PINS} is not valid JSON ({e}); fix or remove it") from None


def _record_pin(data_root: Path, url: str, digest: Digest, pins: dict) -> None:
    if url in pins:
        return
    pins[url] = {"bytes": digest.size, "sha256": digest.sha256.hexdigest(), "recorded": clock.today()}
    atomic.write_json(data_root / PINS, pins, indent=1, sort_keys=True)
    print(f"note: no published SHA-256 for {url}; recorded this verified download's "
          f"({pins[url]['sha256'][:16]}...) in {data_root / PINS}: later downloads must match it", file=sys.stderr)


def _check_member(member: tarfile.TarInfo, url: str) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"refusing {url}: archive member {member.name!r} would land outside the data folder")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"refusing {url}: archive member {member.name!r} is a link or special file")


def _verify(archive: Path, url: str, expected_counts: dict[str, int]) -> str:
    """Check the archive before extracting it; returns the name of its single top folder."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{url} is not a readable .tgz archive ({e})") from None
    for member in members:
        _check_member(member, url)
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    if len(tops) != 1:
        raise DataError(f"{url} should hold one top folder (train/ val/ unsup/ inside), found {sorted(tops)[:5]}")
    top = tops.pop()
    inner = [PurePosixPath(*PurePosixPath(m.name).parts[1:]).as_posix() for m in members if m.isfile()]
    wrong = _mismatch(count_images(inner), expected_counts)
    if wrong:
        raise DataError(f"{url} does not look like the expected dataset: {wrong}")
    return top


def _extract(archive: Path, top: str, target: Path) -> None:
    """Extract into a temporary folder beside `target`, then rename into place in one step."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")  # second guard besides _check_member
            else:
                tar.extractall(staging)
        if not target.exists():  # else a concurrent fetch finished first: keep its folder
            os.replace(staging / top, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_marker(target: Path, url: str, counts: dict[str, int], sha256: str | None = None) -> None:
    atomic.write_json(target / MARKER, {"url": url, "counts": counts, "sha256": sha256}, indent=1)


def fetch_dataset(name: str, data_root: Path, url: str | None = None,
                  expected_counts: dict[str, int] = EXPECTED_COUNTS, progress: bool = True,
                  expected_bytes: int | None = None, expected_sha256: str | None = None) -> Path:
    """Make sure the dataset `name` sits complete under `data_root`; returns its folder.

    `url` overrides the download address (a mirror, a test server). `expected_bytes` and `expected_sha256`,
    when given, are checked against the downloaded archive (fastai's own URLs are pinned in PUBLISHED).
    """
    if url is None:
        if name not in DATASETS:
            raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
        url = DATASETS[name]
    data_root = Path(data_root)
    target = data_root / folder_name(url)
    if is_complete(target):
        return target
    if target.is_dir():
        # Placed by hand (as the offline message suggests) or left by a crash after the rename.
        counts = _count_on_disk(target)
        wrong = _mismatch(counts, expected_counts)
        if wrong:
            raise DataError(f"{target} exists but is incomplete ({wrong}): remove it to download "
                            f"again, or pass DATA={target} to use it as it is")
        _write_marker(target, url, counts)
        return target

    data_root.mkdir(parents=True, exist_ok=True)
    with exclusive(data_root):  # one fetch per data root at a time
        if is_complete(target):  # another process fetched it while this one waited
            return target
        fd, part = tempfile.mkstemp(dir=data_root, prefix=f".{folder_name(url)}.", suffix=".part")
        os.close(fd)
        part = Path(part)
        try:
            with disk_full_is_one_line(data_root, f"fetching {url}"):
                pins = read_pins(data_root)
                digest = Digest()
                _download(url, part, target, name, progress, digest)
                _check_pins(url, digest, pins, expected_bytes, expected_sha256)
                _check_gzip_stream(part, url)
                top = _verify(part, url, expected_counts)
                if progress:
                    print(f"extracting {url.rsplit('/', 1)[-1]} to {target}", file=sys.stderr)
                _extract(part, top, target)
                _record_pin(data_root, url, digest, pins)
                _write_marker(target, url, dict(expected_counts), digest.sha256.hexdigest())
        finally:
            part.unlink(missing_ok=True)  # a retry always starts from a clean download
    return target
