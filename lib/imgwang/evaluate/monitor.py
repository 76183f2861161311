"""kNN monitor for pretraining: does the pretext task teach the encoder what the classes need?

A pretext metric can climb while the features stay useless for the real task (the seed research lost
weeks to that). Every few epochs the frozen encoder embeds labelled train/ images (up to 100 per class); one
half of them (every other image of each class) is the kNN memory, the other half the queries. val/ stays untouched: it
is the score of the transfer stage, and pretraining never looks at it, labels or not.

Epoch 0 is the untrained encoder, the bar the pretext task must clear: it is scored on a copy whose BatchNorm
statistics are first estimated on the memory images (imgwang.evaluate.bn_stats), as evaluate's random-init
reference is; untouched statistics (mean 0, var 1) would lower the bar. The model being trained is not touched.
"""

from __future__ import annotations

import copy

import numpy as np

from ..models.checkpoint import kept_encoder
from .bn_stats import data_bn_stats
from .features import extract_features
from .knn import knn_accuracy

MAX_PER_CLASS = 100  # enough to see a trend; keeps each check to seconds even on full Imagewang (20 x 100)


def split_for_knn(rows: np.ndarray, labels: np.ndarray, max_per_class: int = MAX_PER_CLASS):
    """(memory, query) positions into rows: alternate images of each class (its first `max_per_class`),
    so both halves hold every class."""
    memory, query = [], []
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)[:max_per_class]
        memory += where[0::2].tolist()
        query += where[1::2].tolist()
    return np.array(sorted(memory), dtype=np.int64), np.array(sorted(query), dtype=np.int64)


def knn_monitor(data, every: int, last_epoch: int, batch_size: int, device):
    """`epoch_metrics(model, epoch)` for fit(): {"knn_acc": ...} every `every` epochs and at the last one; epoch 0
    (call it before training) scores the untrained encoder with estimated BatchNorm statistics (see above).
    None when there is nothing to monitor (every == 0, or data without classes)."""
    if every <= 0 or not data.layout.labelled:
        return None
    memory, query = split_for_knn(data.train_rows, data.train_labels)
    if len(query) == 0:
        return None
    loaders = [data.loader(data.train_rows[p], data.train_labels[p], batch_size=batch_size, device=device, mode="eval")
               for p in (memory, query)]
    n_classes = len(data.classes)

    def epoch_metrics(model, epoch: int) -> dict:
        if epoch % every and epoch != last_epoch:
            return {}
        encoder = kept_encoder(model)  # the encoder that will be saved (DINO's teacher)
        if epoch == 0:  # untrained: a copy with the data's BatchNorm statistics; no random draw, training unchanged
            encoder = copy.deepcopy(encoder)
            data_bn_stats(encoder, data, data.train_rows[memory], batch_size, device)
        (mf, ml, _), (qf, ql, _) = (extract_features(encoder, loader, device) for loader in loaders)
        return {"knn_acc": knn_accuracy(mf, ml, qf, ql, n_classes=n_classes)}

    return epoch_metrics


def knn_series(history: list[dict], knn_init: float | None = None) -> list[dict]:
    """The kNN monitor's rows of a pretraining history, from epoch 0 (the untrained encoder) when known."""
    rows = [e for e in history if "knn_acc" in e]
    return [{"epoch": 0, "knn_acc": knn_init}, *rows] if rows and knn_init is not None else rows
