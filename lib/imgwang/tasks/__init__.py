"""Pretext tasks, one file each, registering itself by name. `get_task("patchwork", pct_pos=0.5)`."""

from .base import Task  # noqa: F401
from .registry import TASKS, get_task, is_task, register, task_names, task_params  # noqa: F401
