"""Run a frozen encoder or a classifier over a loader and collect the results on the CPU, in loader order."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..core.errors import DataError


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """model.eval() + inference mode for the block, then the module's previous train/eval state back."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            yield module
    finally:
        module.train(was_training)


def _collect(module: nn.Module, loader, device, transform):
    device = torch.device(device)
    outs, labels, indices = [], [], []
    with eval_mode(module):
        for batch in loader:
            out = module(batch.images.to(device, non_blocking=True))
            # float() makes the result the same whether or not the caller runs under autocast.
            outs.append(transform(out.float()).cpu())
            labels.append(batch.labels.cpu())
            indices.append(batch.indices.cpu())
    if not outs:
        raise DataError("the loader yielded no batches (empty split, or drop_last with fewer images than batch_size)")
    return torch.cat(outs), torch.cat(labels).long(), torch.cat(indices).long()


def extract_features(encoder: nn.Module, loader, device="cpu"):
    """-> (features float32 (N, D) on cpu, labels (N,), dataset indices (N,)).

    Use an eval loader (no shuffle, no drop_last, eval augmentation) so every image counts once.
    """
    return _collect(encoder, loader, device, lambda f: f.flatten(1))


def predict(model: nn.Module, loader, device="cpu"):
    """-> (softmax probabilities float32 (N, C) on cpu, labels (N,), dataset indices (N,))."""
    return _collect(model, loader, device, lambda logits: logits.softmax(dim=1))
