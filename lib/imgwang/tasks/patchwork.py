"""patchwork: is the pasted patch from this image (elsewhere) or from another image (same place)?

For each image a destination box is chosen and overwritten by a square patch:
  positive (label 1): the patch is the SAME image's pixels at a different box;
  negative (label 0): the patch is ANOTHER batch image's pixels at the destination box itself.
A model can only tell them apart by judging whether the patch's content belongs to the picture, which
needs features of objects and textures rather than of patch position.

Three shortcuts are closed:
  - a positive is never a pixel-exact copy of another part of its image (a copy-move detector would then solve
    the task without knowing what anything is): every patch, positive or negative, is resampled from its
    source box, a square of `patch_zoom`-jittered side (a fraction 1 - patch_zoom to 1 of the patch side,
    uniform) at a sub-pixel position inside the box, magnified bilinearly to the patch side, then its
    brightness and contrast scaled by factors uniform in 1 +- `patch_jitter` (brightness multiplies, contrast
    scales about the patch's mean). Negatives get the same draws from the same ranges, so neither the
    softness of a resampled patch nor its tone tells the labels apart. `patch_zoom=0 patch_jitter=0`: the
    seed's exact copies (a debug mode);
  - a positive's source box never overlaps its destination: the boxes are at least `min_gap` (a fraction of
    the image side, default 0: they may touch) apart along a separating axis. Otherwise a large patch is
    mostly a shifted copy of the pixels it covers, and the seam alone gives it away. The pair is drawn
    as: a separating axis (weighted by its number of valid pairs), along it a (destination, source) pair
    uniform over the pairs that far apart, along the other axis both uniform. Negatives take their
    destination from the same draw, so where the patch sits says nothing about the label;
  - every image of a batch has the same zoom: in the pretraining stage (`view_size` set) patchwork gets
    the whole stored images and crops them itself, one crop area and aspect for the batch (area
    `min_scale`-1, as the loader's crop), positions and flips per image. With the loader's per-image
    zoom a negative's patch came from an image at another zoom, so its sharpness gave it away.
Without `view_size` (the tests, a plain call) the images are used as given.

meta: `sources` (B, 2) = [self, partner] batch positions (partner -1 for positives), `boxes` (B, 5) =
[dest y, dest x, src y, src x, size], `labels` (B,) long. Everything is built with index grids on the
images' device, with randomness from the given generator only.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from ..data.views import MakesViews
from .base import register
from .boxes import resample_boxes, separated_corners, valid_pairs
from .classification import BinaryTask, binary_model
from .sampling import randint, uniform

POSITIVE, NEGATIVE = 1, 0  # positive = the patch comes from the image itself


@register
class Patchwork(MakesViews, BinaryTask):
    name = "patchwork"
    min_batch = 2  # a negative takes its patch from another image

    def __init__(self, *, patch_frac: float = 0.5, pct_pos: float = 0.5, min_gap: float = 0.0,
                 min_scale: float = 0.35, fixed_position: bool = False, flip_patches: bool = False,
                 patch_noise: float = 0.0, patch_zoom: float = 0.2, patch_jitter: float = 0.1,
                 noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if not 0.0 <= min_gap < 1.0:
            raise ConfigError(f"min_gap is the least distance between a positive's source and destination boxes "
                              f"as a fraction of the image side: in [0, 1), got {min_gap}")
        if not 0.0 < min_scale <= 1.0:
            raise ConfigError(f"patchwork min_scale (smallest crop area fraction) must be in (0, 1], got {min_scale}")
        if 2 * patch_frac + min_gap > 1 + 1e-9:
            raise ConfigError(f"patch_frac={patch_frac} and min_gap={min_gap}: a positive's source box cannot lie "
                              f"apart from its destination; need 2 x patch_frac + min_gap <= 1")
        self.min_gap, self.min_scale = float(min_gap), float(min_scale)
        if not 0.0 < patch_frac < 1.0:
            raise ConfigError(f"patch_frac is the patch side as a fraction of the image side: in (0, 1), got {patch_frac}")
        if not 0.0 <= pct_pos <= 1.0:
            raise ConfigError(f"pct_pos is the fraction of positives: in [0, 1], got {pct_pos}")
        if patch_noise < 0:
            raise ConfigError(f"patch_noise is a standard deviation: >= 0, got {patch_noise}")
        if not 0.0 <= patch_zoom < 1.0:
            raise ConfigError(f"patch_zoom is how much smaller than the patch its source box may be, as a fraction of "
                              f"the patch side: in [0, 1), got {patch_zoom}")
        if not 0.0 <= patch_jitter < 1.0:
            raise ConfigError(f"patch_jitter is the largest relative change of a patch's brightness and contrast: "
                              f"in [0, 1), got {patch_jitter}")
        self.patch_zoom, self.patch_jitter = float(patch_zoom), float(patch_jitter)
        self.patch_frac, self.pct_pos = patch_frac, pct_pos
        self.fixed_position, self.flip_patches, self.patch_noise = fixed_position, flip_patches, patch_noise
        self.chance = max(pct_pos, 1.0 - pct_pos)  # always answering the majority label

    # patch_frac 0.5 by default: on the sample (tinyconv, 64 px, 30 epochs) the pretext val accuracy was
    # 0.51 at 0.25, 0.63-0.64 at 0.35-0.4 and 0.73 at 0.5: small patches carry too little content to judge.
    def patch_size(self, height: int, width: int) -> int:
        side = min(height, width)  # rounding must not push two patches and the gap past the side
        return max(1, min(round(self.patch_frac * side), (side - round(self.min_gap * side)) // 2))

    def view_kinds(self, side: int):
        return [(1, make_augment(side, "pretrain", scale=(self.min_scale, 1.0), shared_zoom=True))]

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        if self.view_size is not None:  # whole stored images: one zoom for the batch (see the module docstring)
            images = self.make_views(images, generator)[0]
        b, _, h, w = images.shape
        dev = images.device
        s = self.patch_size(h, w)
        ny, nx = h - s + 1, w - s + 1  # possible top-left corners per axis
        gap = round(self.min_gap * min(h, w))
        if valid_pairs(ny, s + gap) + valid_pairs(nx, s + gap) == 0:
            raise ConfigError(f"patch_frac={self.patch_frac} and min_gap={self.min_gap} leave no place for a {s}px "
                              f"patch {gap}px away from another in {h}x{w} images: need 2 x patch + gap <= side")
        if b < 2 and self.pct_pos < 1.0:
            raise ConfigError("patchwork negatives take their patch from another image: use a batch of at least 2")

        # Labels: exactly round(pct_pos * B) positives, at random rows.
        n_pos = round(self.pct_pos * b)
        order = torch.randperm(b, generator=generator, device=generator.device).to(dev)
        positive = order.argsort() < n_pos  # the rows order[:n_pos]
        labels = torch.where(positive, POSITIVE, NEGATIVE)

        # Destination and a separated source corner for every row; negatives use the destination only.
        if self.fixed_position:
            zero = torch.zeros(b, dtype=torch.long, device=dev)
            dy, dx, oy, ox = zero, zero, zero + ny - 1, zero + nx - 1  # top-left <- bottom-right
        else:
            dy, dx, oy, ox = separated_corners(ny, nx, s + gap, b, generator, dev)
        sy, sx = torch.where(positive, oy, dy), torch.where(positive, ox, dx)

        # Source image: self for positives, a random partner != self for negatives.
        self_pos = torch.arange(b, device=dev)
        partner = (self_pos + 1 + randint(max(b - 1, 1), (b,), generator, dev)) % b
        src_img = torch.where(positive, self_pos, partner)

        patches = self._perturb(self._resampled(images, src_img, sy, sx, s, generator), generator)
        ar = torch.arange(s, device=dev)
        out = images.clone()
        drows, dcols = (dy[:, None] + ar)[:, :, None], (dx[:, None] + ar)[:, None, :]
        out[self_pos[:, None, None], :, drows, dcols] = patches.permute(0, 2, 3, 1)

        meta = {
            "sources": torch.stack([self_pos, torch.where(positive, -1, partner)], dim=1),
            "boxes": torch.stack([dy, dx, sy, sx, torch.full_like(dy, s)], dim=1),
            "labels": labels,
        }
        return out, labels.float(), meta

    def _resampled(self, images, src_img, sy, sx, s: int, generator) -> torch.Tensor:
        """(B, C, s, s): each row's patch from its source box, resampled and its tone jittered (module docstring);
        the same draws for positives and negatives."""
        b, dev = src_img.shape[0], images.device
        if self.patch_zoom == 0:  # whole pixels: a gather, an exact copy
            ar = torch.arange(s, device=dev)
            rows, cols = (sy[:, None] + ar)[:, :, None], (sx[:, None] + ar)[:, None, :]
            patches = images[src_img[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        else:
            side = s * (1 - self.patch_zoom * uniform((b,), generator, dev))  # continuous, at most s
            room = s - side  # where the smaller box may sit inside the s-box, sub-pixel
            top, left = sy + room * uniform((b,), generator, dev), sx + room * uniform((b,), generator, dev)
            patches = resample_boxes(images, src_img, top, left, side, s)
        if self.patch_jitter > 0:
            def factor():
                return (1 + self.patch_jitter * (2 * uniform((b,), generator, dev) - 1)).view(b, 1, 1, 1)

            mean = patches.mean(dim=(1, 2, 3), keepdim=True)
            patches = (((patches - mean) * factor() + mean) * factor()).clamp(0, 1)
        return patches

    def _perturb(self, patches: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Optional flips and Gaussian noise, applied to positives and negatives alike (never a giveaway)."""
        b, dev = patches.shape[0], patches.device
        if self.flip_patches:
            flip_x = (uniform((b,), generator, dev) < 0.5).view(b, 1, 1, 1)
            flip_y = (uniform((b,), generator, dev) < 0.5).view(b, 1, 1, 1)
            patches = torch.where(flip_x, patches.flip(-1), patches)
            patches = torch.where(flip_y, patches.flip(-2), patches)
        if self.patch_noise > 0:
            noise = torch.randn(patches.shape, generator=generator, device=generator.device).to(dev)
            patches = (patches + self.patch_noise * noise).clamp(0, 1)
        return patches

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return binary_model(encoder, self.pct_pos)
