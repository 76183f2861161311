"""Linear probe: logistic regression on standardised frozen features.

The classifier starts at zero (the problem is convex, so no random init is needed) and minibatches are
drawn from a seeded generator, so the same features and seed give the same result. The reported accuracy
is the val accuracy after the last epoch: nothing is selected on val.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError


def _check(feats, labels, n_classes: int, split: str):
    feats, labels = torch.as_tensor(feats).float(), torch.as_tensor(labels).long()
    if feats.dim() != 2 or len(feats) != len(labels) or len(feats) == 0:
        raise DataError(f"linear probe {split}: need (N, D) features and N labels, got {tuple(feats.shape)} and {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"linear probe {split}: labels must be in 0..{n_classes - 1} (no unlabelled -1 rows), "
                        f"found {labels.min().item()}..{labels.max().item()}")
    return feats, labels


def linear_probe(train_feats, train_labels, val_feats, val_labels, n_classes: int, epochs: int = 100,
                 lr: float = 0.1, weight_decay: float = 1e-4, batch_size: int = 1024, device="cpu",
                 seed: int = 0) -> dict:
    """-> {"acc": last-epoch val accuracy, "history": per-epoch dicts, "val_pred": (N_val,) long}."""
    if epochs < 1 or lr <= 0 or batch_size < 1:
        raise ConfigError(f"linear probe needs epochs >= 1, lr > 0, batch_size >= 1; got {epochs}, {lr}, {batch_size}")
    device = torch.device(device)
    x_train, y_train = _check(train_feats, train_labels, n_classes, "train")
    x_val, y_val = _check(val_feats, val_labels, n_classes, "val")
    if x_train.shape[1] != x_val.shape[1]:
        raise DataError(f"linear probe: train features have {x_train.shape[1]} dims, val {x_val.shape[1]}")

    # Standardise with train statistics only; constant features get std 1 instead of a division by 0.
    mean, std = x_train.mean(0), x_train.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    x_train, y_train = ((x_train - mean) / std).to(device), y_train.to(device)
    x_val, y_val = ((x_val - mean) / std).to(device), y_val.to(device)

    layer = torch.nn.Linear(x_train.shape[1], n_classes).to(device)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)

    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=gen).to(device)
        total_loss, total_correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            logits = layer(x_train[rows])
            loss = F.cross_entropy(logits, y_train[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(rows)
            total_correct += (logits.argmax(1) == y_train[rows]).sum().item()
        with torch.no_grad():
            val_logits = layer(x_val)
            val_pred = val_logits.argmax(1)
            history.append({
                "epoch": epoch,
                "train_loss": total_loss / len(x_train),
                "train_accuracy": total_correct / len(x_train),
                "val_loss": F.cross_entropy(val_logits, y_val).item(),
                "val_accuracy": (val_pred == y_val).float().mean().item(),
                "lr": opt.param_groups[0]["lr"],
            })
    return {"acc": history[-1]["val_accuracy"], "history": history, "val_pred": val_pred.cpu()}
