"""Locks that keep two commands apart: one stage at a time per version, one writer of run.json at a time.

The locks are `fcntl.flock` locks on small files in the run folder. The kernel drops such a lock when its
process ends, however it ends (SIGKILL, OOM killer), so a lock is never left held by a dead process. The
holder also writes who it is (pid, stage, host, start) into the lock file and clears it when it lets go:
a record found by the next holder therefore means the previous one died without cleaning up, and the stage
it was running is marked `interrupted (process gone)` (see runs.reconcile).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..core.clock import now
from ..core.filelock import exclusive
from ..core.errors import ConfigError

STAGE_LOCK = ".stage.lock"
RUN_JSON_LOCK = ".run.json.lock"


class VersionBusy(ConfigError):
    """Another process runs a stage in this version."""


def describe(record: dict) -> str:
    return (f"{record.get('stage') or 'a stage'} is running there (pid {record.get('pid')} on "
            f"{record.get('host')}, started {record.get('started')})")


class StageLock:
    """Held while a stage (or a pipeline's stages) runs in one version; `acquire` refuses when taken."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STAGE_LOCK
        self.file = None
        self.left_behind: dict | None = None  # the record of a holder that died

    def acquire(self, stage: str) -> StageLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # opened non-inheritable: the notebook kernel does not keep it
        for attempt in range(5):
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                record = _read_record(self.path)
                if record or attempt == 4:  # no record: maybe only a moment's probe by holder()
                    f.close()
                    raise VersionBusy(f"{self.run_dir.name} is busy: {describe(record)}; wait for it to end "
                                      f"or stop it first") from None
                time.sleep(0.05)
        self.file = f
        self.left_behind = _read_record(self.path) or None
        self.set_stage(stage)
        return self

    def set_stage(self, stage: str) -> None:
        record = {"pid": os.getpid(), "stage": stage, "host": socket.gethostname(),
                  "started": now()}
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps(record))
        self.file.flush()

    def release(self) -> None:
        if self.file is None:
            return
        self.file.seek(0)
        self.file.truncate()  # an empty file: nobody died holding it
        self.file.flush()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def holder(run_dir: Path) -> dict | None:
    """The record of the live process holding the version's stage lock, or None. Creates no file."""
    path = Path(run_dir) / STAGE_LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(path) or {"stage": None, "pid": "?", "host": "?", "started": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def left_behind(run_dir: Path) -> dict | None:
    """The record a dead holder left in the lock file (None when the lock is held or was released cleanly)."""
    if holder(run_dir) is not None:
        return None
    return _read_record(Path(run_dir) / STAGE_LOCK) or None


def _read_record(path: Path) -> dict:
    try:
        text = Path(path).read_text()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def run_json_lock(run_dir: Path):
    """Exclusive, blocking: a read-modify-write of run.json under it loses no other process's update."""
    return exclusive(Path(run_dir) / RUN_JSON_LOCK)
