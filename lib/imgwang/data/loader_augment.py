"""The augmentation of the fine-tuning loader and of the pretraining loader (for tasks that do not make their
own views), as the researcher chooses it.

    crop_scale  [min, max] area fraction of RandomResizedCrop (aspect 3/4-4/3, torchvision's rule)
    flip_p      probability of a horizontal flip; 0: never
    rotations   angles in degrees, multiples of 90, one drawn per image (counter-clockwise); [0]: none

The defaults are the Imagewang leaderboard recipe, fastai's train_imagenette.py and its Imagewang
fine-tuning loader: RandomResizedCrop(size, min_scale=0.35) + FlipItem(0.5), no rotation. They suit
photographs. For digits, text, many medical or satellite images a flip or a tight crop changes what an
image shows: see the README, "Choosing augmentations for non-photographic data".

Rotations by multiples of 90 degrees are exact (no resampling, no corners to fill) and cheap: together
with flips they are the symmetries of a square, the usual augmentation for overhead and microscopy images.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..stages.spec import AUGMENT
from .augment import make_augment

DEFAULTS = {p.name: p.default for p in AUGMENT}  # declared in the stage spec, with their docs
CHECKS = {p.name: p.check for p in AUGMENT}
VIEW_KEYS = ("flip_p", "rotations")  # what also reaches the views of a task that makes its own (data/views.py)
# Pretext tasks whose labels a loader augmentation would change: the rotation task predicts the rotation.
CLASHES = {"rotation": ("rotations", "the rotation task's labels are the rotation itself")}


def check(params: dict, task: str | None = None, strict: bool = True) -> dict:
    """Validated values of the augmentation parameters in `params` (defaults for the missing ones), or one
    ConfigError naming the parameter, before any compute.

    A pretext task that makes its own views (simclr, swav, dino, byol, patchwork) gets the whole stored image,
    no loader crop: flip_p and rotations apply to its views instead (data/views.py), crop_scale to nothing (its
    views' crop areas are task parameters), so with `strict` a crop_scale other than the default is refused (a
    pipeline passes it on to fine-tuning instead) and the result leaves it out: the run records only what it
    used."""
    out = {key: params.get(key, default) for key, default in DEFAULTS.items()}
    out = {key: CHECKS[key](key, value) for key, value in out.items()}
    if task in CLASHES and out[CLASHES[task][0]] != DEFAULTS[CLASHES[task][0]]:
        name, why = CLASHES[task]
        raise ConfigError(f"{name.upper()}={out[name]} cannot be used with TASK={task}: {why}")
    if task is not None and makes_views(task):
        if strict and out["crop_scale"] != DEFAULTS["crop_scale"]:
            raise ConfigError(f"CROP_SCALE={out['crop_scale']} does not apply to TASK={task}: it cuts its own views "
                              f"from the whole image (set their areas with its task parameters, e.g. P=\"-p min_scale 0.2\")")
        return {key: out[key] for key in VIEW_KEYS}
    return out


def makes_views(task: str) -> bool:
    """Whether the registered task `task` cuts its own views (imgwang.data.views), so the loader does not crop."""
    from ..tasks.registry import TASKS, task_names

    return task in task_names() and getattr(TASKS[task], "makes_views", False)


def apply(cfg: dict, task: str | None = None) -> None:
    """Put the checked augmentation parameters into a stage config, in place (see `check`): a task that makes
    its own views keeps flip_p and rotations only."""
    checked = check(cfg, task=task, strict=False)
    for key in DEFAULTS:
        cfg.pop(key, None)
    cfg.update(checked)


def chosen(cfg: dict) -> dict:
    """The augmentation parameters of a (checked) stage config, as StageData.loader takes them."""
    return {key: cfg.get(key, default) for key, default in DEFAULTS.items()}


def make_loader_augment(size: int, mode: str, crop_scale=DEFAULTS["crop_scale"], flip_p: float = DEFAULTS["flip_p"],
                        rotations=DEFAULTS["rotations"]):
    """The loader's `augment(images, generator)`: crop + flip (imgwang.data.augment), then a rotation when
    asked. 'eval' resizes only, whatever the parameters."""
    crop = make_augment(size, mode, scale=tuple(crop_scale), flip_p=flip_p)
    angles = sorted({int(a) % 360 for a in rotations})
    if mode == "eval" or angles == [0]:
        return crop  # nothing drawn for rotations: the default path's random stream is unchanged
    return Rotated(crop, angles)


class Rotated:
    """An augmentation followed by a random rotation from `angles` (multiples of 90) per image."""

    def __init__(self, augment, angles):
        self.augment, self.angles = augment, tuple(int(a) % 360 for a in angles)
        self.size = getattr(augment, "size", None)

    def __repr__(self) -> str:
        return f"Rotated({self.augment!r}, angles={list(self.angles)})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_rot90(self.augment(images, generator), self.angles, generator)


def random_rot90(images: torch.Tensor, angles, generator: torch.Generator) -> torch.Tensor:
    """Rotate each square image of (B, C, S, S) counter-clockwise by an angle drawn uniformly from `angles`
    (multiples of 90), on the images' device, the draw from `generator` (no host round trip)."""
    angles = tuple(int(a) % 360 for a in angles)
    if images.shape[-1] != images.shape[-2]:
        raise ConfigError(f"rotations by 90 degrees need square images, got {tuple(images.shape[-2:])}")
    pick = torch.randint(len(angles), (images.shape[0],), generator=generator, device=generator.device).to(images.device)
    out = images
    for i, angle in enumerate(angles):  # no lookup tensor built from host data: nothing waits (the views' hot path)
        if angle:  # torch.rot90 over (H, W) with k > 0 turns counter-clockwise as an image is displayed (row 0 on top)
            out = torch.where((pick == i).view(-1, 1, 1, 1), torch.rot90(images, angle // 90, dims=(-2, -1)), out)
    return out
