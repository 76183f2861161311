"""transform: was transform X applied to this image? (the seed's idea, one binary question)

A fraction `pct_applied` of the images (each independently) gets transform X; the model emits one
logit, trained with binary cross-entropy, target 1 = applied. The metric is accuracy at logit 0;
chance = max(p, 1 - p) (always answering the majority class).

Supported X, each chosen because natural photos are *not* invariant to it, so spotting it needs
knowledge of how the world looks:
- "channel_shuffle": the colour channels in one of the 5 non-identity orders (drawn per image);
  grass turns red, skies green.
- "vflip": upside down.
- "hflip_vflip": both flips (a 180 degree rotation).
- "grayscale": colour removed (ITU-R 601 luma in all three channels).
- "invert": the photographic negative, 1 - x.
A plain horizontal flip is deliberately not offered: mirrored photos are as natural as the originals,
so the question has no answer. Grey images give channel_shuffle and grayscale nothing to see, and
symmetric ones hide flips: a little irreducible error that the metric simply includes.
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch import nn

from ..core.errors import ConfigError
from .base import register
from .classification import BinaryTask, binary_model

# The 5 channel orders that differ from (0, 1, 2).
CHANNEL_ORDERS = torch.tensor([p for p in itertools.permutations(range(3)) if p != (0, 1, 2)])
LUMA = (0.299, 0.587, 0.114)


def channel_shuffle(images: torch.Tensor, order_index: torch.Tensor) -> torch.Tensor:
    orders = _on_device(images.device)[order_index]  # (B, 3)
    return images.gather(1, orders[:, :, None, None].expand_as(images))


@functools.lru_cache(maxsize=None)
def _on_device(device: torch.device) -> torch.Tensor:
    """CHANNEL_ORDERS on `device`, copied once: a copy per batch would make the host wait for a GPU."""
    return CHANNEL_ORDERS.to(device)


def vflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(2)


def hflip_vflip(images: torch.Tensor) -> torch.Tensor:
    return images.flip(2, 3)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    luma = LUMA[0] * images[:, 0:1] + LUMA[1] * images[:, 1:2] + LUMA[2] * images[:, 2:3]
    return luma.expand_as(images).clone()


def invert(images: torch.Tensor) -> torch.Tensor:
    return 1.0 - images


TRANSFORMS = ("channel_shuffle", "vflip", "hflip_vflip", "grayscale", "invert")


@register
class Transform(BinaryTask):
    name = "transform"

    def __init__(self, *, transform: str = "channel_shuffle", pct_applied: float = 0.5, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if transform not in TRANSFORMS:
            raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
        if not 0.0 < pct_applied < 1.0:
            raise ConfigError(f"pct_applied must be strictly between 0 and 1 (else there is nothing to tell apart), got {pct_applied}")
        self.transform = transform
        self.pct_applied = float(pct_applied)
        self.chance = max(self.pct_applied, 1.0 - self.pct_applied)

    def apply(self, images: torch.Tensor, order_index: torch.Tensor) -> torch.Tensor:
        """Transform X on every image; `order_index` (B,) picks channel_shuffle's order (ignored otherwise)."""
        if self.transform == "channel_shuffle":
            return channel_shuffle(images, order_index)
        return {"vflip": vflip, "hflip_vflip": hflip_vflip, "grayscale": grayscale, "invert": invert}[self.transform](images)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b = images.shape[0]
        gdev = generator.device
        applied = (torch.rand(b, generator=generator, device=gdev) < self.pct_applied).to(images.device)
        order_index = torch.randint(0, len(CHANNEL_ORDERS), (b,), generator=generator, device=gdev).to(images.device)
        inputs = torch.where(applied[:, None, None, None], self.apply(images, order_index), images)
        sources = torch.arange(b, device=images.device).unsqueeze(1)
        return inputs, applied.float(), {"sources": sources, "applied": applied, "channel_order": order_index}

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return binary_model(encoder, self.pct_applied)
