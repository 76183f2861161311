"""The one lock helper: an exclusive, blocking flock (run.json's writers, one download per data root)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path):
    """Exclusive, blocking flock on `path`: a file (created) or a folder that exists (then no file is left
    behind). The one lock helper: run.json's writers, a download of one data root."""
    path = Path(path)
    folder = path.is_dir()
    if not folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY if folder else os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
