"""Tasks that make their own views (simclr, swav, dino, byol, patchwork): each view is cropped once, from the
whole image.

Such a task declares `makes_views = True`; the pretraining stage then hands it the cached image without the
loader's RandomResizedCrop (so a view's crop area is a fraction of the whole image, as in the papers, and
pixels are resampled once), and sets `view_size` to SIZE: views come out at SIZE (large) or a fraction of
it (small crops), whatever side the stored image has. Without `view_size` the input's side is used.

A task lists its kinds of view in `view_kinds(side)` as (count, Augment) pairs, in the order the model
receives them (large views first).

The square's symmetries are the researcher's, not the task's: every view is flipped with probability
`view_flip_p` (0.5, as every method's paper; 0: never, for glyphs and text) and, when `view_rotations` holds
more than [0], turned by an angle drawn from it per view (multiples of 90 degrees, exact; [0, 90, 180, 270]
with flips: all eight symmetries of a square, for aerial tiles, X-rays, microscopy). The pretraining stage
sets them from FLIP_P and ROTATIONS (`-p flip_p 0`, `-p rotations [0,90,180,270]`), the parameters that set
the loader's flip and rotations for the other tasks and fine-tuning's.
"""

from __future__ import annotations

import copy

import torch

from .augment import Augment
from .loader_augment import Rotated


class MakesViews:
    makes_views = True
    view_size: int | None = None  # set by the pretraining stage to SIZE
    view_flip_p: float = 0.5  # set by the pretraining stage to FLIP_P
    view_rotations: tuple[int, ...] = (0,)  # set by the pretraining stage to ROTATIONS

    def view_kinds(self, side: int) -> list[tuple[int, Augment]]:
        raise NotImplementedError

    def view_sides(self, side: int) -> list[int]:
        """The sides of the views made at SIZE `side`, largest first: what the encoder must take."""
        return sorted({int(augment.size) for _, augment in self.view_kinds(side)}, reverse=True)

    def make_views(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Every view of every image, deterministic given `generator`."""
        side = int(self.view_size or min(images.shape[-2:]))
        key = (side, float(self.view_flip_p), tuple(sorted({int(a) % 360 for a in self.view_rotations})))
        cached = getattr(self, "_view_kinds", None)
        if cached is None or cached[0] != key:
            kinds = [(count, with_symmetries(augment, key[1], key[2])) for count, augment in self.view_kinds(side)]
            cached = self._view_kinds = (key, kinds)
        return tuple(augment(images, generator) for count, augment in cached[1] for _ in range(count))


def with_symmetries(augment: Augment, flip_p: float, angles: tuple[int, ...]):
    """`augment` flipping with probability `flip_p`, then turning by an angle drawn from `angles` (none drawn when
    it is (0,), so the default views' random stream is unchanged)."""
    flipped = copy.copy(augment)
    flipped.flip_p = float(flip_p)
    return flipped if angles == (0,) else Rotated(flipped, angles)


def same_size_runs(views):
    """Split consecutive views into runs of one spatial size (large views first, then small crops), so a
    model makes one encoder pass per resolution."""
    runs = []
    for v in views:
        if runs and runs[-1][0].shape[-2:] == v.shape[-2:]:
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


def small_side(side: int, fraction: float) -> int:
    return max(4, round(side * fraction))
