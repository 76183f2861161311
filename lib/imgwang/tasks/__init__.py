"""Pretext tasks, one file each, registered by name. `get_task("patchwork", pct_pos=0.5)`."""

from .base import TASKS, Task, get_task, register, task_names, task_params  # noqa: F401
