"""The augmentation of the fine-tuning loader and of the pretraining loader (for tasks that do not make their
own views), as the researcher chooses it.

    crop_scale  [min, max] area fraction of RandomResizedCrop (aspect 3/4-4/3, torchvision's rule)
    flip_p      probability of a horizontal flip; 0: never
    rotations   angles in degrees, multiples of 90, one drawn per image (counter-clockwise); [0]: none

The defaults are the Imagewang leaderboard recipe, fastai's train_imagenette.py and its Imagewang
fine-tuning loader: RandomResizedCrop(size, min_scale=0.35) + FlipItem(0.5), no rotation. They suit
photographs. For digits, text, many medical or satellite images a flip or a tight crop changes what an
image shows: see docs/augmentations.md.

Rotations by multiples of 90 degrees are exact (no resampling, no corners to fill) and cheap: together
with flips they are the symmetries of a square, the usual augmentation for overhead and microscopy images.
"""

from __future__ import annotations

import torch

from ..core.errors import ConfigError
from ..spec import AUGMENT
from .augment import make_augment

DEFAULTS = {p.name: p.default for p in AUGMENT}  # declared in the stage spec, with their docs
def chosen(cfg: dict) -> dict:
    """The augmentation parameters of a resolved stage config, as StageData.loader takes them (a task that cuts
    its own views has none in its config: the loader hands it whole images anyway)."""
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
