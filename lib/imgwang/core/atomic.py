"""Atomic file writes: a reader (or a crash) never sees half a file.

Every writer goes through `replacing`: the content goes to a temporary file in the same folder (same file
system, so the final rename is one step), is fsynced, then moved onto the real name with os.replace. On any
failure, Ctrl-C included, the temporary file is removed and the old file, if any, stays as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path, temp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the block to write; when the block completes, the file is
    fsynced and moved onto `path`. `temp` names the temporary file (default: a fresh `.<name>.*.tmp`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if temp is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        temp = Path(name)
    try:
        yield temp
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_with(path, write: Callable, temp: Path | None = None) -> Path:
    """Call write(binary file) for `path`'s new content, atomically. Returns `path`."""
    with replacing(path, temp) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def write_bytes(path, data: bytes, temp: Path | None = None) -> Path:
    return write_with(path, lambda f: f.write(data), temp)


def write_text(path, text: str, temp: Path | None = None) -> Path:
    return write_bytes(path, text.encode(), temp)


def write_json(path, obj, temp: Path | None = None, **dumps) -> Path:
    """json.dumps(obj, **dumps) plus a final newline."""
    return write_text(path, json.dumps(obj, **dumps) + "\n", temp)


def torch_save(obj, path) -> Path:
    """torch.save to `path` atomically (torch imported here: the writers above serve the light modules too)."""
    import torch

    return write_with(path, lambda f: torch.save(obj, f))
