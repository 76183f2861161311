"""Weighted k-nearest-neighbour classification on frozen features (the InstDisc / DINO protocol).

Features are L2-normalised, so the dot product is the cosine similarity. Each of the k nearest training
examples votes for its class with weight exp(similarity / temperature): a small temperature lets the
closest neighbours dominate, a large one tends to a plain majority vote.

k = 20 and T = 0.07 are the convention, not tuned here: the temperature is InstDisc's (Wu et al. 2018),
and DINO's eval_knn.py (Caron et al. 2021) reports k = 10, 20, 100, 200 with "20 is usually working the
best". Keeping them fixed keeps kNN numbers comparable across runs and papers; a k tuned on val would not be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError, DataError

K, TEMPERATURE = 20, 0.07  # the convention (see above)


def knn_predict(train_feats, train_labels, val_feats, k: int = K, temperature: float = TEMPERATURE,
                n_classes: int | None = None, chunk_size: int = 1024) -> torch.Tensor:
    """-> predicted class (N_val,) long, computed on the features' device in chunks of val rows."""
    train_feats, val_feats = torch.as_tensor(train_feats), torch.as_tensor(val_feats)
    train_labels = torch.as_tensor(train_labels).long().to(train_feats.device)
    if train_feats.dim() != 2 or val_feats.dim() != 2 or train_feats.shape[1] != val_feats.shape[1]:
        raise DataError(f"kNN needs (N, D) features of the same D, got {tuple(train_feats.shape)} and {tuple(val_feats.shape)}")
    if len(train_labels) != len(train_feats) or len(train_feats) == 0:
        raise DataError(f"kNN got {len(train_feats)} training features and {len(train_labels)} labels")
    if train_labels.min() < 0:
        raise DataError("kNN training labels contain -1 (unlabelled): use the labelled rows only")
    if k < 1 or temperature <= 0:
        raise ConfigError(f"kNN needs k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    n_classes = int(n_classes) if n_classes is not None else int(train_labels.max()) + 1
    k = min(k, len(train_feats))

    train = F.normalize(train_feats.float(), dim=1)
    preds = []
    for start in range(0, len(val_feats), chunk_size):
        val = F.normalize(val_feats[start:start + chunk_size].float().to(train.device), dim=1)
        sim, nn_idx = (val @ train.T).topk(k, dim=1)
        # Subtracting each row's best similarity keeps exp() finite at tiny temperatures; argmax unchanged.
        weights = ((sim - sim[:, :1]) / temperature).exp()
        votes = torch.zeros(len(val), n_classes, device=train.device)
        votes.scatter_add_(1, train_labels[nn_idx], weights)
        preds.append(votes.argmax(dim=1))
    if not preds:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(preds)


def describe_knn(acc: float, k: int = K, temperature: float = TEMPERATURE, name: str = "", scored_on: str = "val") -> str:
    """One line with the settings that produced the number and the set it was scored on."""
    return f"{name + ': ' if name else ''}kNN (k={k}, T={temperature:g}, cosine) {scored_on} {100 * acc:.2f}%"


def knn_correct(train_feats, train_labels, val_feats, val_labels, k: int = K, temperature: float = TEMPERATURE,
                n_classes: int | None = None) -> torch.Tensor:
    """(N_val,) bool on the CPU: whether the weighted kNN vote names each val image's class."""
    val_labels = torch.as_tensor(val_labels).long()
    if len(val_labels) != len(val_feats) or len(val_labels) == 0:
        raise DataError(f"kNN got {len(val_feats)} val features and {len(val_labels)} val labels")
    pred = knn_predict(train_feats, train_labels, val_feats, k, temperature, n_classes)
    return pred.cpu() == val_labels.cpu()


def knn_accuracy(train_feats, train_labels, val_feats, val_labels, k: int = K, temperature: float = TEMPERATURE,
                 n_classes: int | None = None) -> float:
    """Top-1 accuracy in [0, 1] of the weighted kNN vote on the val features."""
    return knn_correct(train_feats, train_labels, val_feats, val_labels, k, temperature, n_classes).float().mean().item()
