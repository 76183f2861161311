"""BatchNorm statistics for an untrained encoder, so a random-init reference is scored as a fair bar.

A freshly built encoder's BatchNorm layers hold running mean 0 and variance 1. In eval mode they then pass
the un-normalised activations on, which grow or shrink layer by layer, so the frozen features of a random
encoder are worse than that encoder can give, and a pretrained encoder (whose statistics come from its
training) clears a lowered bar. Before a random encoder's features are extracted (evaluate's random-init kNN
and probe, the pretrain kNN monitor's epoch-0 reference), `estimate_bn_stats` sets each BatchNorm's
running statistics to the data's: a forward pass over a fixed set of train images with the BatchNorm layers
in train mode and momentum None (PyTorch's cumulative average: each batch's mean and unbiased variance
weigh the same), no gradient, every other layer in eval mode (dropout, drop-path off), then eval mode again.

This is torch.optim.swa_utils.update_bn's recipe (and pycls's "precise BN", which uses 8,192 images); it
differs from update_bn in that only the BatchNorm layers switch to train mode and no graph is built. The
images (`bn_rows`): at most MAX_IMAGES of the fitting set, spread evenly over it, in a seeded shuffled
order so each batch mixes the classes (a cumulative average of per-batch variances misses the spread
between batch means; batches of one class each would make it large). Weights are untouched: only buffers
change. Encoders without BatchNorm (a ViT's LayerNorm has no running statistics) are left as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_IMAGES = 4096  # a few thousand images pin the statistics down; pycls uses 8,192, half keeps a CPU run cheap


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The layers that keep running statistics (BatchNorm1d/2d/3d, SyncBatchNorm and subclasses such as timm's)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def estimate_bn_stats(encoder: nn.Module, loader, device="cpu") -> int:
    """Replace every BatchNorm's running statistics by the cumulative average over `loader`'s batches (see the
    module docstring); the encoder ends in eval mode. -> the number of batches seen (0: no BatchNorm)."""
    layers = batchnorms(encoder)
    if not layers:
        encoder.eval()
        return 0
    momenta = {m: m.momentum for m in layers}
    device = torch.device(device)
    encoder.eval()
    batches = 0
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the batches seen
            m.train()
        with torch.no_grad():
            for batch in loader:
                encoder(batch.images.to(device, non_blocking=True))
                batches += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        encoder.eval()
    return batches


def bn_rows(rows: np.ndarray, max_images: int = MAX_IMAGES) -> np.ndarray:
    """At most `max_images` of `rows`, evenly spaced (so every class of a class-ordered list is in)."""
    rows = np.asarray(rows)
    if len(rows) <= max_images:
        return rows
    return rows[np.linspace(0, len(rows) - 1, max_images).round().astype(np.int64)]


def bn_loader(data, rows, batch_size: int, device, max_images: int = MAX_IMAGES, seed: int = 0):
    """An eval-transform loader over `bn_rows(rows)` in a seeded shuffled order; it drops a short last batch
    (it would weigh as much as a full one in the cumulative average) unless one batch is all there is."""
    rows = bn_rows(rows, max_images)
    return data.loader(rows, batch_size=batch_size, device=device, mode="eval", seed=seed, shuffle=True,
                       drop_last=len(rows) >= batch_size)


def data_bn_stats(encoder: nn.Module, data, rows, batch_size: int, device, seed: int = 0) -> int:
    """Estimate the untrained `encoder`'s (on `device`) BatchNorm statistics on `rows` of `data`; it ends in
    eval mode. -> the number of images seen (0 when it has no BatchNorm: nothing to estimate)."""
    if not batchnorms(encoder):
        return 0
    loader = bn_loader(data, rows, batch_size, device, seed=seed)
    estimate_bn_stats(encoder, loader, device)
    return len(loader) * loader.batch_size if loader.drop_last else len(loader.rows)
