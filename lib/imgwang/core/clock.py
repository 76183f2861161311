"""The one clock of the lab: every wall-clock stamp (run.json, lock and registry records, folder names, pins)."""

from __future__ import annotations

import time
from datetime import datetime

FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # local time with its UTC offset


def now() -> str:
    return time.strftime(FORMAT)


def parse(stamp: str) -> float:
    """A `now()` stamp as seconds since the epoch."""
    return datetime.strptime(stamp, FORMAT).timestamp()


def today() -> str:
    return time.strftime("%Y-%m-%d")


def folder_stamp() -> str:
    """Local time for a folder name, e.g. 20261201-041500."""
    return time.strftime("%Y%m%d-%H%M%S")
