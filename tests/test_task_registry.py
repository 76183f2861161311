"""A new pretext task is one file that registers itself; the registry imports no task and finds every one.
(A task from one file outside the lab pretraining through the stage: tests/test_stage_runs.py's concurrent pair.)"""

import subprocess
import sys

import pytest

from conftest import REPO
from imgwang.core.errors import ConfigError


def test_the_registry_imports_no_task_and_discovery_finds_every_task_file():
    """Importing the registry imports no task; a lookup by name imports the task's own file only, so patchwork's
    stage never pays for lightly (which imports timm, torchvision and torch._dynamo: seconds at every stage's
    start); an unknown name still looks in every file before it is refused."""
    code = ("import sys, imgwang.tasks.registry as r; "
            "print(sorted(m for m in sys.modules if m.startswith('imgwang.tasks.') and m.split('.')[-1] not in "
            "('registry', 'base'))); r.get_task('patchwork'); "
            "print(sorted(m for m in ('lightly', 'timm', 'torchvision', 'imgwang.tasks.byol') if m in sys.modules), "
            "r.is_task('byol'), 'lightly' in sys.modules, r.is_task('no_such_task'), 'imgwang.tasks.swav' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0] == "[]"
    assert out.stdout.split("\n")[1].split() == ["[]", "True", "True", "False", "True"]
    import importlib
    import inspect

    from imgwang.tasks import TASKS, Task, task_names

    names = task_names()
    defined = set()  # every concrete task class of the package's files (a helper module defines none)
    for path in (REPO / "lib/imgwang/tasks").glob("*.py"):
        module = importlib.import_module(f"imgwang.tasks.{path.stem}")
        defined |= {cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, Task) and cls.__module__ == module.__name__ and cls.name}
    assert defined <= {TASKS[n] for n in names}  # each registered itself


def test_a_module_named_in_imgwang_tasks_must_exist(monkeypatch):
    from imgwang.tasks import task_names

    monkeypatch.setenv("IMGWANG_TASKS", "no_such_task_module")
    with pytest.raises(ConfigError, match="IMGWANG_TASKS names 'no_such_task_module'"):
        task_names()
