"""The registry of pretext tasks by name. It imports no task: each task file registers itself with
`@register`. A lookup by name imports the task's own file (tasks/<name>.py) when it holds the task; listing the
tasks, or a name no file is named after, imports every module of this package (and those named in IMGWANG_TASKS).
Why not always every module: byol, dino and swav import lightly, which imports timm, torchvision and torch._dynamo:
measured on a 2-core CPU, 2.5-2.8 s at the start of a process that trains nothing (evaluate, review, bin/stage.py),
1.3 s of one that trains (torch's optimizers import torch._dynamo anyway), which a patchwork run never needs.

A new task is one file in lib/imgwang/tasks/ (a `Task` subclass with `@register`) plus its tests; a task
kept outside the repository is an importable module named in IMGWANG_TASKS (comma-separated), e.g.
`IMGWANG_TASKS=my_tasks make pretrain TASK=jigsaw` with my_tasks.py on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil

from ..core.errors import ConfigError

TASKS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a task available by its `name`."""
    TASKS[cls.name] = cls
    return cls


def discover() -> None:
    """Import every module of the package once (each task file registers its task; helpers register none)."""
    package = __name__.rpartition(".")[0]
    names = [f"{package}.{m.name}" for m in pkgutil.iter_modules(importlib.import_module(package).__path__)
             if not m.name.startswith("_")]
    names += [n.strip() for n in os.environ.get("IMGWANG_TASKS", "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            raise ConfigError(f"IMGWANG_TASKS names {name!r}, which cannot be imported (not on PYTHONPATH)") from None


def task_names() -> list[str]:
    discover()
    return sorted(TASKS)


def is_task(name: str) -> bool:
    """Whether `name` is a registered task, importing its own file first and every module only if that fails."""
    if name in TASKS:
        return True
    package = __name__.rpartition(".")[0]
    if isinstance(name, str) and name.isidentifier() and importlib.util.find_spec(f"{package}.{name}") is not None:
        importlib.import_module(f"{package}.{name}")
    if name not in TASKS:
        discover()
    return name in TASKS


def get_task(name: str, **params):
    """Build a registered task; unknown names or parameters raise one clear ConfigError."""
    if not is_task(name):
        raise ConfigError(f"unknown TASK={name!r}; known tasks: {', '.join(task_names())}")
    accepted = task_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"task {name!r} has no parameter {', '.join(unknown)}; it takes: {', '.join(accepted)}")
    return TASKS[name](**params)


def task_params(name: str) -> dict[str, object]:
    """Parameter names of a task with their defaults (noise_p included)."""
    is_task(name)
    sig = inspect.signature(TASKS[name].__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[1:] if p.kind == p.KEYWORD_ONLY}
