"""Tasks that make their own views (simclr, swav, dino, byol, patchwork): each view is cropped once, from the
whole image.

Such a task declares `makes_views = True`; the pretraining stage then hands it the cached image without the
loader's RandomResizedCrop (so a view's crop area is a fraction of the whole image, as in the papers, and
pixels are resampled once), and sets `view_size` to SIZE: views come out at SIZE (large) or a fraction of
it (small crops), whatever side the stored image has. Without `view_size` the input's side is used.

A task lists its kinds of view in `view_kinds(side)` as (count, Augment) pairs, in the order the model
receives them (large views first).
"""

from __future__ import annotations

import torch

from .augment import Augment


class MakesViews:
    makes_views = True
    view_size: int | None = None  # set by the pretraining stage to SIZE

    def view_kinds(self, side: int) -> list[tuple[int, Augment]]:
        raise NotImplementedError

    def make_views(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Every view of every image, deterministic given `generator`."""
        side = int(self.view_size or min(images.shape[-2:]))
        cached = getattr(self, "_view_kinds", None)
        if cached is None or cached[0] != side:
            cached = self._view_kinds = (side, self.view_kinds(side))
        return tuple(augment(images, generator) for count, augment in cached[1] for _ in range(count))


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
