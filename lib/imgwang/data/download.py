"""Fetch an Imagewang tarball once: download, verify, extract atomically, mark complete.

A folder counts as present only when its `.complete` marker exists (written last), so an interrupted
download or extraction is never mistaken for data. Verification happens on the archive before anything
is extracted, and extraction goes to a temporary folder beside the target that is renamed into place.
"""

import http.client
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from imgwang.data.layout import IMAGE_SUFFIXES
from imgwang.errors import ConfigError, DataError

BASE_URL = "https://s3.amazonaws.com/fast-ai-imageclas"
DATASETS = {
    "imagewang": f"{BASE_URL}/imagewang-160.tgz",  # shortest side 160 px
    "imagewang-320": f"{BASE_URL}/imagewang-320.tgz",
    "imagewang-full": f"{BASE_URL}/imagewang.tgz",
}
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


def _download(url: str, part: Path, target: Path, name: str, progress: bool) -> int:
    """Stream `url` into `part`; returns bytes written. Network failures become one-line DataErrors."""
    opener = urllib.request.build_opener()  # built per call so proxy settings are read now
    written = 0
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"download {name}", disable=not progress, file=sys.stderr) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
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
    except (tarfile.TarError, EOFError, OSError) as e:
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


def _write_marker(target: Path, url: str, counts: dict[str, int]) -> None:
    tmp = target / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"url": url, "counts": counts}, indent=1))
    os.replace(tmp, target / MARKER)


def fetch_dataset(name: str, data_root: Path, url: str | None = None,
                  expected_counts: dict[str, int] = EXPECTED_COUNTS, progress: bool = True,
                  expected_bytes: int | None = None) -> Path:
    """Make sure the dataset `name` sits complete under `data_root`; returns its folder.

    `url` overrides the download address (a mirror, a test server). `expected_bytes`, when known,
    is checked against the downloaded archive size.
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
    part = data_root / (url.rstrip("/").rsplit("/", 1)[-1] + ".part")
    try:
        size = _download(url, part, target, name, progress)
        if expected_bytes is not None and size != expected_bytes:
            raise DataError(f"{url} has {size} bytes, expected {expected_bytes}: not the known archive")
        top = _verify(part, url, expected_counts)
        if progress:
            print(f"extracting {part.name} to {target}", file=sys.stderr)
        _extract(part, top, target)
        _write_marker(target, url, dict(expected_counts))
    finally:
        part.unlink(missing_ok=True)  # a retry always starts from a clean download
    return target
