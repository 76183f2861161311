"""Figures for notebooks: confusion matrix, training curves, run overlays, image grids.

Every function builds its figure with pyplot and returns it: the inline backend shows it at the end of the
cell, and the caller may glue it or save it. Nothing here calls plt.show() or closes a figure; close the
returned figure yourself when making many in a loop.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..errors import ConfigError, DataError


def plot_confusion(cm, class_names, present_only: bool = True, title: str = "confusion (rows = true class)"):
    """Heat map of a confusion matrix with the counts written in the non-empty cells.

    present_only: rows are the classes that occur in the evaluation set (Imagewang val holds 10 of 20), and
    columns are those classes plus any other class that received a prediction, so no mistake is hidden.
    Otherwise every class gets a row and a column.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise DataError(f"confusion matrix of shape {cm.shape} does not match {len(class_names)} class names")
    rows = np.arange(len(cm))
    cols = rows
    if present_only:
        rows = np.flatnonzero(cm.sum(1) > 0)
        cols = np.flatnonzero((cm.sum(1) > 0) | (cm.sum(0) > 0))
    sub = cm[np.ix_(rows, cols)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(cols), 1.0 + 0.4 * len(rows)), layout="constrained")
    ax.imshow(sub, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(cols)), [class_names[c] for c in cols], rotation=90)
    ax.set_yticks(range(len(rows)), [class_names[r] for r in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = sub.max() / 2 if sub.size else 0
    for i, j in zip(*np.nonzero(sub)):
        ax.text(j, i, str(int(sub[i, j])), ha="center", va="center", fontsize=7,
                color="white" if sub[i, j] > threshold else "black")
    return fig


def _series(history, key):
    return [h.get("epoch", i) for i, h in enumerate(history)], [h.get(key, float("nan")) for h in history]


def plot_history(history: list[dict], keys=("train_loss", "val_loss"), metric_keys=None):
    """Two panels: the loss curves (`keys`) and the metric curves (by default every other train_*/val_* key)."""
    if not history:
        raise DataError("empty history: no epoch finished")
    if metric_keys is None:
        seen = [k for h in history for k in h]
        metric_keys = [k for k in dict.fromkeys(seen)
                       if k.startswith(("train_", "val_")) and k not in keys and not k.endswith("_loss")]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    for ax, plotted, label in ((loss_ax, keys, "loss"), (metric_ax, metric_keys, "metric")):
        for key in plotted:
            ax.plot(*_series(history, key), marker="o", markersize=3, label=key)
        epoch_axis(ax)
        ax.set_ylabel(label)
        if plotted:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {label} recorded", ha="center", va="center", transform=ax.transAxes)
    return fig


def epoch_axis(ax) -> None:
    """x is the epoch: whole numbers only (a 3-epoch run otherwise gets ticks at 0.25, 0.5, ...)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_curves(runs: dict[str, list[dict]], key: str):
    """One curve per run of history[key] against epoch, e.g. val_accuracy of several versions."""
    with_key = {name: h for name, h in runs.items() if any(key in e for e in h)}
    if not with_key:
        raise ConfigError(f"no run has {key!r} in its history (runs: {', '.join(runs) or 'none'})")
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name, history in with_key.items():
        ax.plot(*_series(history, key), marker="o", markersize=3, label=name)
    epoch_axis(ax)
    ax.set_ylabel(key)
    ax.legend()
    return fig


def plot_knn_monitor(series: list[dict], knn_init: float, chance: float):
    """One run's kNN monitor (rows of `knn_series`, epoch 0 the untrained encoder) against both of its bars."""
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(*_series(series, "knn_acc"), marker="o", label="kNN accuracy (epoch 0: untrained)")
    ax.axhline(knn_init, ls=":", color="tab:red", label="untrained encoder")
    ax.axhline(chance, ls="--", color="gray", label="chance")
    epoch_axis(ax)
    ax.set_ylabel("kNN accuracy (train/ split)")
    ax.legend(fontsize=8)
    return fig


def to_hwc_uint8(image) -> np.ndarray:
    """(3, H, W) or (H, W, 3) image, uint8 or float in [0, 1], tensor or array -> (H, W, 3) uint8."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim != 3:
        raise DataError(f"expected one image (3, H, W), got shape {image.shape}")
    if image.shape[0] in (1, 3):  # channels first, the project's layout; (H, W, 3) is accepted too
        image = image.transpose(1, 2, 0)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return image


def image_grid(images, titles=None, ncols: int = 6, size: float = 2.0):
    """Grid of N images (N, 3, H, W) uint8 or float in [0, 1], or a list of such images; one axes per image."""
    images = list(images)
    if not images:
        raise DataError("image_grid got no images")
    if titles is not None and len(titles) != len(images):
        raise DataError(f"image_grid got {len(images)} images but {len(titles)} titles")
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * nrows),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            ax.remove()  # keep exactly one axes per image
            continue
        ax.imshow(to_hwc_uint8(images[i]))
        ax.axis("off")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    return fig
