"""Plain classification metrics on predicted and true labels (torch tensors, numpy arrays or lists)."""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import DataError, ImgwangError


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64).ravel()


def _pair(pred, labels):
    pred, labels = _as_numpy(pred), _as_numpy(labels)
    if pred.shape != labels.shape:
        raise DataError(f"{len(pred)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise DataError("no labels to score (empty evaluation set)")
    return pred, labels


def accuracy(pred, labels) -> float:
    """Fraction of predictions equal to the label, in [0, 1]."""
    pred, labels = _pair(pred, labels)
    return float((pred == labels).mean())


def per_class_accuracy(pred, labels, class_names) -> dict[str, float]:
    """Accuracy (recall) per true class, only for classes that occur in `labels`, in class-index order.

    Imagewang's val set holds 10 of the 20 train classes: the other 10 get no entry rather than a 0 or NaN.
    """
    pred, labels = _pair(pred, labels)
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(f"labels span {labels.min()}..{labels.max()} but there are {len(class_names)} class names")
    return {class_names[c]: float((pred[labels == c] == c).mean()) for c in np.unique(labels)}


def confusion_matrix(pred, labels, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: row = true class, column = predicted class."""
    pred, labels = _pair(pred, labels)
    for name, values in (("labels", labels), ("predictions", pred)):
        if values.min() < 0 or values.max() >= n_classes:
            raise DataError(f"{name} span {values.min()}..{values.max()}, outside 0..{n_classes - 1}")
    return np.bincount(labels * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of repeated runs; std is 0.0 for a single run.

    ddof=1 because the runs are a sample of what the method would score; one run gives no spread estimate,
    reported as 0.0 (read it as "not measured", not as "no noise").
    """
    values = [float(v) for v in values]
    if not values:
        raise ImgwangError("mean_std needs at least one value")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, float(np.std(values, ddof=1))
