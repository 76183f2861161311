"""Does a better pretext task transfer better? Per data set, every pretrained entry's pretext val metric above
chance against its fine-tuning gain over the matched baseline, and every version's kNN accuracy against its
fine-tuned val accuracy, each with Spearman's rank correlation and its p-value (scipy.stats.spearmanr).

Ranks, not values: pretext metrics of different tasks live on different scales, and only their order is
asked about. A group of pretraining replicates is one point (its means), as in its verdict; with fewer than
3 points there is no correlation to speak of.
"""

from __future__ import annotations

import math

import pandas as pd

from .readable import missing

MIN_POINTS = 3
PAIRS = (  # (x column, y column, x label, y label, which rows)
    ("pretext_above_chance", "vs_baseline", "pretext val metric - chance", "fine-tuned gain over baseline (points)",
     "entries"),
    ("knn_acc", "val_acc", "kNN accuracy of the frozen encoder (%)", "fine-tuned val accuracy (%)", "versions"),
)


def link_points(table: pd.DataFrame) -> dict[str, dict[str, pd.DataFrame]]:
    """data set -> {"pretext": entries with a pretext metric and a verdict's gain, "knn": versions with kNN and
    val_acc (group rows left out: their members are there)}."""
    out = {}
    done = table[[str(s).startswith("complete") or str(s).startswith("group of") for s in table["status"]]].copy()
    done["pretext_above_chance"] = [None if missing(m) or missing(c) else float(m) - float(c)
                                    for m, c in zip(done["pretext_val_metric"], done["pretext_chance"])]
    is_group_row = done["version"] == done["group"]
    for data, rows in done.groupby("data", sort=False):
        entries = rows[~rows["verdict"].astype(str).str.startswith("(in group")]
        out[str(data)] = {
            "pretext": entries[entries["pretext_above_chance"].notna() & entries["vs_baseline"].notna()],
            "knn": rows[~is_group_row[rows.index] & rows["knn_acc"].notna() & rows["val_acc"].notna()],
        }
    return out


def spearman(x, y) -> tuple[float, float, int]:
    """(rho, two-sided p, n); NaNs with fewer than MIN_POINTS points or a constant side."""
    from scipy.stats import spearmanr

    x, y = [float(v) for v in x], [float(v) for v in y]
    if len(x) < MIN_POINTS or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan, len(x)
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue), len(x)


def link_lines(points: dict) -> list[str]:
    """One line per data set and question: rho, p, n, or why there is none."""
    lines = []
    for data, sets in points.items():
        for (xcol, ycol, *_), (kind, rows) in zip(PAIRS, sets.items()):
            rho, p, n = spearman(rows[xcol], rows[ycol])
            what = "pretext above chance vs fine-tuned gain" if kind == "pretext" else "kNN vs fine-tuned val_acc"
            if math.isnan(rho):
                lines.append(f"{data}: {what}: {n} point{'s' if n != 1 else ''}, too few (or all equal) for a rank "
                             f"correlation (needs {MIN_POINTS})")
            else:
                lines.append(f"{data}: {what}: Spearman rho = {rho:+.2f}, p = {p:.3f} over {n} points")
    return lines


def plot_links(points: dict):
    """One row per data set: pretext above chance vs gain, kNN vs val_acc; each point labelled by its version,
    rho and p in the title."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(points) or 1, 2, figsize=(9, 3.4 * max(1, len(points))), squeeze=False,
                             layout="constrained")
    for r, (data, sets) in enumerate(points.items()):
        for c, ((xcol, ycol, xlabel, ylabel, _), rows) in enumerate(zip(PAIRS, sets.values())):
            ax = axes[r, c]
            scale_x, scale_y = (1, 100) if c == 0 else (100, 100)
            x = [scale_x * float(v) for v in rows[xcol]]
            y = [scale_y * float(v) for v in rows[ycol]]
            ax.scatter(x, y, s=18)
            for xi, yi, name in zip(x, y, rows["version"]):
                ax.annotate(str(name), (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
            if c == 0:
                ax.axhline(0, color="gray", lw=0.8, ls="--")
            rho, p, n = spearman(rows[xcol], rows[ycol])
            stat = f"rho {rho:+.2f}, p {p:.3f}" if not math.isnan(rho) else f"{n} points: too few for rho"
            ax.set_title(f"{data}: {stat}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
    return fig
