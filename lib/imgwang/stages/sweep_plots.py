"""`make compare` for a sweep (stages/sweep.py): each metric against each swept parameter, with 95% CIs over the
point's pretraining seeds, the sweep's baseline beside it, and each point's verdict (its own baseline, Holm across
the sweep's points: stages/verdicts.py).

A point's CI is the t interval of the mean over its seeds (each seed one encoder, its fine-tuned accuracy the mean
of its RUNS), as its verdict counts them; with one seed, fine-tuned accuracy falls back to the interval over its
fine-tuning runs, and the frozen-encoder metrics (one value) get none.
"""

from __future__ import annotations

import math

import pandas as pd

from ..evaluate.stats import ALPHA
from .readable import missing, short_verdict
from .resolve import parse_value

METRICS = (("val_acc", "fine-tuned val (%)"), ("knn_acc", "kNN (%)"), ("linear_acc", "linear probe (%)"),
           ("pretext_above_chance", "pretext metric - chance"))


def sweeps(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(s for s in table["sweep"] if not missing(s)))


def parse_point(text: str) -> dict:
    """'patch_frac=0.25 pct_pos=0.5' -> {'patch_frac': 0.25, 'pct_pos': 0.5}."""
    return {name: parse_value(value) for name, _, value in (w.partition("=") for w in str(text).split())}


def mean_ci(values: list[float], std: float | None = None, n: int | None = None) -> tuple[float, float]:
    """(mean, half-width of the 95% t interval); from values, or from a mean's recorded std and n."""
    from scipy.stats import t

    if std is None:
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    else:
        mean = values[0]
    half = t.ppf(1 - ALPHA / 2, n - 1) * std / math.sqrt(n) if n and n > 1 and not math.isnan(std) else math.nan
    return mean, half


def sweep_points(table: pd.DataFrame, name: str) -> tuple[pd.DataFrame, dict]:
    """(one row per point: its parameters, each metric's mean and CI half-width, verdict; the baseline's
    fine-tuned mean and CI, {} when it has not finished)."""
    rows = table[(table["sweep"] == name) & table["status"].astype(str).str.startswith("complete")].copy()
    rows["pretext_above_chance"] = [None if missing(m) or missing(c) else float(m) - float(c)
                                    for m, c in zip(rows["pretext_val_metric"], rows["pretext_chance"])]
    baseline = {}
    out = []
    for point, members in rows.groupby("point", sort=False):
        if point == "baseline":
            b = members.iloc[0]
            baseline = dict(zip(("mean", "ci"), mean_ci([float(b["val_acc"])], None if missing(b["val_acc_std"])
                                                         else float(b["val_acc_std"]), int(b["runs"] or 1))))
            baseline["version"] = b["version"]
            continue
        entry = table[(table["version"] == members.iloc[0]["group"])] if not missing(members.iloc[0]["group"]) else members
        record = {**parse_point(point), "point": point, "seeds": len(members),
                  "verdict": short_verdict(entry.iloc[0].to_dict()) if len(entry) else ""}
        for col, _ in METRICS:
            values = [float(v) for v in members[col] if not missing(v)]
            if not values:
                record[col], record[f"{col}_ci"] = math.nan, math.nan
            elif len(values) == 1 and col == "val_acc" and not missing(members.iloc[0]["val_acc_std"]):
                record[col], record[f"{col}_ci"] = mean_ci(values, float(members.iloc[0]["val_acc_std"]),
                                                           int(members.iloc[0]["runs"]))
            else:
                record[col], record[f"{col}_ci"] = mean_ci(values)
        out.append(record)
    return pd.DataFrame(out), baseline


def plot_sweep(points: pd.DataFrame, baseline: dict, name: str):
    """Rows: the swept parameters; columns: the metrics. x: the parameter's value, one line per setting of the
    others; error bars: 95% CIs; the fine-tuned panel shows the baseline's band and marks a point whose gain is
    beyond noise (Holm's p < 0.05) with a star."""
    import matplotlib.pyplot as plt

    params = [c for c in points.columns if c not in {"point", "seeds", "verdict"} and not c.endswith("_ci")
              and c not in {m for m, _ in METRICS}]
    fig, axes = plt.subplots(len(params), len(METRICS), figsize=(3.2 * len(METRICS), 2.8 * len(params)), squeeze=False,
                             layout="constrained")
    for r, param in enumerate(params):
        others = [p for p in params if p != param]
        groups = points.groupby(others, sort=False) if others else [((), points)]
        values = list(dict.fromkeys(points[param]))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        for c, (col, label) in enumerate(METRICS):
            ax = axes[r, c]
            scale = 100 if col != "pretext_above_chance" else 1
            for key, rows in groups:
                key = key if isinstance(key, tuple) else (key,)
                series = ", ".join(f"{p}={v}" for p, v in zip(others, key)) or None
                rows = rows.sort_values(param, key=lambda s: s if numeric else s.map(values.index))
                x = rows[param] if numeric else rows[param].map(values.index)
                ax.errorbar(x, scale * rows[col], yerr=scale * rows[f"{col}_ci"].fillna(0), marker="o", ms=4, capsize=3,
                            label=series)
                if col == "val_acc":
                    for xi, yi, verdict in zip(x, rows[col], rows["verdict"]):
                        if verdict.endswith("*"):
                            ax.annotate("*", (xi, scale * yi), fontsize=12, xytext=(4, 0), textcoords="offset points")
            if col == "val_acc" and baseline:
                m, h = 100 * baseline["mean"], 100 * (0 if math.isnan(baseline["ci"]) else baseline["ci"])
                ax.axhspan(m - h, m + h, color="gray", alpha=0.2)
                ax.axhline(m, color="gray", ls="--", lw=1, label=f"baseline {baseline['version']}")
            if not numeric:
                ax.set_xticks(range(len(values)), [str(v) for v in values])
            ax.set_xlabel(param, fontsize=8)
            ax.set_ylabel(label, fontsize=8)
            if r == 0 and c == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"sweep {name}: mean over seeds, 95% CI; * gain beyond noise (Holm across the sweep's points)",
                 fontsize=9)
    return fig


def sweep_lines(points: pd.DataFrame, name: str) -> list[str]:
    """One line per point: its parameters and verdict against the sweep's baseline."""
    return [f"{name} {row['point']}: {row['verdict'] or 'no verdict yet'}" for row in points.to_dict("records")]
