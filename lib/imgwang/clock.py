"""The one wall-clock format of run.json and the logs: local time with its UTC offset."""

from __future__ import annotations

import time


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
