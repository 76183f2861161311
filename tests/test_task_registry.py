"""A new pretext task is one file that registers itself; the registry imports no task and finds every one."""

import os
import subprocess
import sys

import pytest
import scrapbook as sb

from conftest import REPO
from imgwang.core.errors import ConfigError

FLIP_TASK = '''
"""hflip: was the image mirrored left to right? A throw-away task: the whole of it is this file."""

import torch

from imgwang.tasks.base import register
from imgwang.tasks.classification import ClassificationTask


@register
class HFlip(ClassificationTask):
    name = "hflip"
    n_classes = 2

    def __init__(self, *, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)

    def make_batch(self, images, generator):
        b = images.shape[0]
        flipped = torch.randint(0, 2, (b,), generator=generator, device=generator.device).to(images.device)
        inputs = torch.where(flipped.view(b, 1, 1, 1) == 1, images.flip(3), images)
        return inputs, flipped, {"sources": torch.arange(b, device=images.device).unsqueeze(1)}
'''


def test_the_registry_imports_no_task_and_discovery_finds_every_task_file():
    code = ("import sys, imgwang.tasks.registry as r; "
            "print(sorted(m for m in sys.modules if m.startswith('imgwang.tasks.') and m.split('.')[-1] not in "
            "('registry', 'base')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]
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


def test_a_task_from_one_file_pretrains_through_the_stage(lab_env, tmp_path):
    (tmp_path / "flip_task.py").write_text(FLIP_TASK)
    env = {**os.environ, "IMGWANG_TASKS": "flip_task",
           "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)}
    runs_dir = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, str(REPO / "bin" / "stage.py"), "pretrain", "TASK=hflip", "DATA=sample", "ARCH=tinyconv",
         "SIZE=32", "EPOCHS=1", "BS=32", "COMET=off", "-p", "knn_every", "0", "--runs-dir", str(runs_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    scraps = sb.read_notebook(str(runs_dir / "v1" / "01-pretrain.ipynb")).scraps.data_dict
    assert scraps["task"] == "hflip" and scraps["pretext_chance"] == 0.5 and 0 <= scraps["pretext_val_metric"] <= 1
    assert (runs_dir / "v1" / "encoder.pt").exists()
