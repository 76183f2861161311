"""FLIP_P and ROTATIONS reach the views of every task that makes its own (simclr, swav, dino, byol, patchwork):
flip_p 0 mirrors no view, rotations [0, 90, 180, 270] turn views all four ways, and the defaults flip half of them
as before. Read on step images that colour jitter, grayscale, blur and solarization cannot mirror."""

import pytest
import torch

from conftest import gen
from imgwang.tasks import get_task, task_names
from imgwang.tasks.registry import TASKS

VIEW_TASKS = [name for name in task_names() if getattr(TASKS[name], "makes_views", False)]


def step_images(b: int = 24, size: int = 24) -> torch.Tensor:
    """Grey images, dark on the left half, lighter on the right: which way a view faces survives every colour change
    the tasks make (the light level stays below solarization's threshold before brightness jitter)."""
    images = torch.zeros(b, 3, size, size)
    images[..., size // 2:] = 0.4
    return images


def orientations(views) -> list[int]:
    """Quarter turns (counter-clockwise) each view shows, -1 for a mirrored one, None where a crop missed the step."""
    out = []
    for v in views:
        h = v.shape[-1] // 2
        g = v.mean(dim=1)
        dx = g[:, :, h:].mean(dim=(1, 2)) - g[:, :, :h].mean(dim=(1, 2))  # right - left
        dy = g[:, h:, :].mean(dim=(1, 2)) - g[:, :h, :].mean(dim=(1, 2))  # bottom - top
        for x, y in zip(dx.tolist(), dy.tolist()):
            if max(abs(x), abs(y)) < 0.02:
                out.append(None)
            elif abs(x) >= abs(y):
                out.append(0 if x > 0 else 2)  # 180 degrees and a mirror look alike here: told apart below
            else:
                out.append(1 if y < 0 else 3)  # a quarter turn counter-clockwise brings the light right side to the top
    return out


def views_of(name: str, flip_p: float, rotations) -> list[int]:
    task = get_task(name)
    task.view_flip_p, task.view_rotations = flip_p, tuple(rotations)
    seen = [o for o in orientations(task.make_views(step_images(), gen(3))) if o is not None]
    assert len(seen) > 20, f"{name}: too few views show the step to judge"
    return seen


@pytest.mark.parametrize("name", VIEW_TASKS)
def test_flip_off_mirrors_no_view_and_the_default_mirrors_some(name):
    assert set(views_of(name, 0.0, [0])) == {0}  # no view faces the other way
    assert set(views_of(name, 0.5, [0])) == {0, 2}  # the default (every method's paper) flips about half
    assert set(views_of(name, 1.0, [0])) == {2}


@pytest.mark.parametrize("name", VIEW_TASKS)
def test_rotations_turn_views_all_four_ways(name):
    seen = views_of(name, 0.0, [0, 90, 180, 270])
    assert set(seen) == {0, 1, 2, 3} and min(seen.count(k) for k in range(4)) > len(seen) / 10
    assert set(views_of(name, 0.0, [0, 90])) == {0, 1}


def test_the_pretraining_stage_hands_flip_p_and_rotations_to_the_views():
    from imgwang.stages.pretrain import build_pretext

    cfg = dict(task="simclr", task_params={}, size=32, arch="tinyconv", flip_p=0.0, rotations=[0, 180])
    task, _ = build_pretext(cfg)
    assert (task.view_flip_p, task.view_rotations, task.view_size) == (0.0, (0, 180), 32)
    assert set(orientations(task.make_views(step_images(), gen(1))) or []) - {None} == {0, 2}
    old_run = {k: v for k, v in cfg.items() if k not in ("flip_p", "rotations")}  # recorded before views took them
    task, _ = build_pretext(old_run)
    assert (task.view_flip_p, task.view_rotations) == (0.5, (0,))
