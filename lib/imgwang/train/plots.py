"""Training figures for notebooks and the tracker: loss and metric curves, runs overlaid, the kNN monitor,
gradient magnitudes per layer.

Every function builds its figure and returns it: the inline backend shows it at the end of the cell, and the
caller may glue it or save it. Nothing here calls plt.show() or closes a figure; close the returned figure
yourself when making many in a loop. matplotlib is imported inside the functions: `import imgwang.train`
(every training process) does not load pyplot.
"""

from __future__ import annotations

import math

from ..core.errors import ConfigError, DataError


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
    import matplotlib.pyplot as plt

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
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_curves(runs: dict[str, list[dict]], key: str):
    """One curve per run of history[key] against epoch, e.g. val_accuracy of several versions."""
    with_key = {name: h for name, h in runs.items() if any(key in e for e in h)}
    if not with_key:
        raise ConfigError(f"no run has {key!r} in its history (runs: {', '.join(runs) or 'none'})")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name, history in with_key.items():
        ax.plot(*_series(history, key), marker="o", markersize=3, label=name)
    epoch_axis(ax)
    ax.set_ylabel(key)
    ax.legend()
    return fig


def mark_chance(ax, val_chance: float, train_chance: float) -> None:
    """The pretext metric's chance as dashed lines: one, or one per split where their batches differ (pair
    accuracy's chance is 1 / (2B - 1): a val set smaller than a batch has a higher chance than training)."""
    if math.isclose(val_chance, train_chance, rel_tol=0.02):
        ax.axhline(val_chance, ls="--", color="gray", label="chance")
    else:
        ax.axhline(train_chance, ls="--", color="tab:blue", label="chance (train batches)")
        ax.axhline(val_chance, ls="--", color="tab:orange", label="chance (val batches)")
    ax.legend()


def plot_knn_monitor(series: list[dict], knn_init: float, chance: float):
    """One run's kNN monitor (rows of `knn_series`, epoch 0 the untrained encoder) against both of its bars."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(*_series(series, "knn_acc"), marker="o", label="kNN accuracy (epoch 0: untrained)")
    ax.axhline(knn_init, ls=":", color="tab:red", label="untrained encoder")
    ax.axhline(chance, ls="--", color="gray", label="chance")
    epoch_axis(ax)
    ax.set_ylabel("kNN accuracy (train/ split)")
    ax.legend(fontsize=8)
    return fig


def plot_grad_stats(stats: dict[str, dict[str, float]], title: str = "gradient |grad| per layer"):
    """Bar chart of mean |grad| per layer (error bar = std), log scale, in layer order."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, works without a display

    names = list(stats)
    means = [stats[n]["mean"] for n in names]
    stds = [stats[n]["std"] for n in names]
    fig = Figure(figsize=(max(6.0, 0.25 * len(names) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    x = list(range(len(names)))
    ax.bar(x, means, yerr=stds, capsize=2, color=["tab:red" if m == 0 else "tab:blue" for m in means])
    if any(m > 0 for m in means):
        ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.set_ylabel("mean |grad| (red = zero: dead layer)")
    ax.set_title(title)
    return fig


def plot_embedding_std(history: list[dict]):
    """The collapse monitor (train/collapse.py): embedding_std per epoch against the healthy 1/sqrt(d) and the
    warning floor. None when the history has none (a task without embeddings)."""
    from .collapse import FLOOR_FRACTION, embedding_std_floor

    rows = [h for h in history if "embedding_std" in h]
    if not rows:
        return None
    import matplotlib.pyplot as plt

    dim = rows[-1]["embedding_dim"]
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(*_series(rows, "embedding_std"), marker="o", label="embedding_std (training batches)")
    ax.axhline(dim ** -0.5, ls="--", color="tab:green", label=f"healthy: 1/sqrt({dim})")
    ax.axhline(embedding_std_floor(dim), ls=":", color="tab:red", label=f"collapse floor: {FLOOR_FRACTION}/sqrt({dim})")
    ax.set_ylim(bottom=0)
    epoch_axis(ax)
    ax.set_ylabel("std of normalised embeddings")
    ax.legend(fontsize=8)
    return fig
