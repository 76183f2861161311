"""Raw pixels as a frozen-feature reference: the bar any learned encoder should clear.

On small or simple images a linear probe on raw pixels often beats random conv features by far, so a
pretrained encoder that only beats the random-init one may still be worse than no encoder at all. Each
image (as the eval loader gives it: resized, no augmentation) is area-downsampled to PIXEL_SIDE x
PIXEL_SIDE, flattened, and standardised per dimension with the fitting set's mean and std.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import DataError

PIXEL_SIDE = 32  # 3 x 32 x 32 = 3,072 dimensions, the CIFAR side: small enough for kNN and a probe


def pixel_features(loader, side: int = PIXEL_SIDE):
    """-> (features float32 (N, 3 * side * side) on cpu, labels (N,), dataset indices (N,)), in loader order."""
    feats, labels, indices = [], [], []
    for batch in loader:
        images = batch.images.float()
        if images.shape[-1] != side or images.shape[-2] != side:
            images = F.interpolate(images, size=(side, side), mode="area")
        feats.append(images.flatten(1).cpu())
        labels.append(batch.labels.cpu())
        indices.append(batch.indices.cpu())
    if not feats:
        raise DataError("the loader yielded no batches: no images to take pixels from")
    return torch.cat(feats), torch.cat(labels).long(), torch.cat(indices).long()


def standardise(fit: torch.Tensor, *others: torch.Tensor):
    """Zero mean, unit std per dimension using the fitting set's statistics only (constant dims: std 1)."""
    mean, std = fit.mean(0), fit.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple((x - mean) / std for x in (fit, *others))
