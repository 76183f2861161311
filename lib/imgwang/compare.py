"""`make compare`: one row per run version from its glued scraps and run.json.

A failed or partial run shows what it has and its status; a broken notebook never breaks the table.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from .runs import STAGES, atomic_write_text, read_run_json, stage_record, versions
from .stages.spec import STAGES as SPEC
from .stages.spec import Scraps, scrap_stage

COLUMNS = [
    "version", "status", "task", "arch", "data", "size", "pretrain_epochs", "transfer_epochs", "from",
    "pretext_metric", "pretext_val_metric", "pretext_chance", "pretrain_knn_acc", "pretrain_knn_init", "val_acc", "val_acc_std", "runs", "knn_acc",
    "linear_acc", "eval_acc", "baseline", "vs_baseline", "pretrain_wall_s", "transfer_wall_s", "evaluate_wall_s", "review_wall_s",
]


def read_scraps(notebook: Path) -> dict:
    """Scraps glued in an executed notebook ({} when it is missing or unreadable)."""
    if not notebook.exists():
        return {}
    try:
        import scrapbook as sb

        return {k: clean(v) for k, v in sb.read_notebook(str(notebook)).scraps.data_dict.items()}
    except Exception as e:  # a half-written or hand-edited notebook must not break the table
        return {"_error": f"{type(e).__name__}: {e}"}


def stage_scraps(run_dir: Path, stage: str) -> Scraps:
    """The scraps of one stage of a run, readable only by the names the stage spec declares."""
    return Scraps(stage, read_scraps(run_dir / STAGES[stage]))


def clean(value):
    return float("nan") if value == "nan" else value  # scrapbook turns NaN into the string 'nan'


def run_scraps(run_dir: Path) -> dict[str, dict]:
    return {stage: stage_scraps(run_dir, stage) for stage in STAGES}


def run_status(run_dir: Path, scraps: dict[str, dict]) -> str:
    """'complete' when all four stages are done; else the stages' states, e.g. 'pretrain:done transfer:failed'."""
    states = {s: stage_record(run_dir, s).get("status") for s in STAGES}
    if all(v == "done" for v in states.values()):
        return "complete"
    makes_encoder = {s for s in STAGES if SPEC[s].makes_encoder}
    baseline = scraps.get("transfer", {}).get("from_version") == "none" and not any(states[s] for s in makes_encoder)
    if baseline and all(v == "done" for s, v in states.items() if s not in makes_encoder):
        return "complete (baseline)"
    return " ".join(f"{s}:{v}" for s, v in states.items() if v) or (
        "no run.json" if not read_run_json(run_dir).get("stages") else "empty")


def compare_row(run_dir: Path) -> dict:
    scraps = run_scraps(run_dir)
    pre, tra, ev, rev = (scraps[s] for s in STAGES)
    pre_cfg, tra_cfg = pre.get("config", {}), tra.get("config", {})
    any_cfg = pre_cfg or tra_cfg or ev.get("config", {}) or {}
    return {
        "version": run_dir.name,
        "status": run_status(run_dir, scraps),
        "task": pre.get("task", pre_cfg.get("task", "none" if tra.get("from_version") == "none" else None)),
        "arch": any_cfg.get("arch"),
        "data": any_cfg.get("data"),
        "size": tra_cfg.get("size", pre_cfg.get("size")),
        "pretrain_epochs": pre_cfg.get("epochs"),
        "transfer_epochs": tra_cfg.get("epochs"),
        "from": tra.get("from_version"),
        "pretext_metric": pre.get("pretext_metric_name"),
        "pretext_val_metric": pre.get("pretext_val_metric"),
        "pretext_chance": pre.get("pretext_chance"),
        "pretrain_knn_acc": pre.get("pretrain_knn_acc"),
        "pretrain_knn_init": pre.get("pretrain_knn_init"),  # the untrained encoder's: the bar to clear
        "val_acc": tra.get("val_acc"),
        "val_acc_std": tra.get("val_acc_std"),
        "runs": len(tra.get("val_accs", [])) or None,
        "knn_acc": ev.get("knn_acc"),
        "linear_acc": ev.get("linear_acc"),
        "eval_acc": ev.get("eval_acc"),
        **{f"{s}_wall_s": scraps[s].get(f"{s}_wall_s") for s in STAGES},
    }


def compare_table(runs_dir: Path) -> pd.DataFrame:
    rows = [compare_row(runs_dir / v) for v in versions(runs_dir)]
    add_source_tasks(rows)
    add_baseline_deltas(rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def add_source_tasks(rows: list[dict]) -> None:
    """A run fine-tuned from another version's encoder shows that version's pretext task."""
    task_of = {row["version"]: row["task"] for row in rows}
    for row in rows:
        if is_missing(row["task"]) and row["from"] not in (None, "none", row["version"]):
            row["task"] = task_of.get(row["from"])


# A baseline (FROM=none) answers "did pretraining help?" only for runs fine-tuned the same way.
MATCH = ("data", "arch", "size", "transfer_epochs")


def add_baseline_deltas(rows: list[dict]) -> None:
    """Give each pretrained run `baseline` (the newest FROM=none run fine-tuned alike: same data, arch,
    size, transfer epochs) and `vs_baseline` (its val_acc minus the baseline's, as a fraction)."""
    baselines = {}
    for row in rows:  # in version order: a later baseline replaces an earlier one
        if row["from"] == "none" and not is_missing(row["val_acc"]):
            baselines[tuple(row[k] for k in MATCH)] = row
    for row in rows:
        base = baselines.get(tuple(row[k] for k in MATCH))
        if row["from"] in (None, "none") or base is None or is_missing(row["val_acc"]):
            row["baseline"], row["vs_baseline"] = None, None
        else:
            row["baseline"], row["vs_baseline"] = base["version"], row["val_acc"] - base["val_acc"]


def histories(runs_dir: Path, vers: list[str], key: str = "transfer_history") -> dict[str, list[dict]]:
    """Per-epoch histories of chosen runs, for overlaid learning curves."""
    stage = scrap_stage(key)
    out = {}
    for v in vers:
        h = stage_scraps(runs_dir / v, stage).get(key)
        if h and isinstance(h[0], list):  # transfer glues one history per repeat: show the first
            h = h[0]
        if h:
            out[v] = h
    return out


def knn_curves(runs_dir: Path, vers: list[str]) -> dict[str, list[dict]]:
    """The kNN monitor of each run that has one, from epoch 0 (the untrained encoder) when it was glued."""
    from .evaluate.monitor import knn_series

    out = {}
    for v in vers:
        s = stage_scraps(runs_dir / v, "pretrain")
        series = knn_series(s.get("pretrain_history") or [], s.get("pretrain_knn_init"))
        if series:
            out[v] = series
    return out


def write_compare(runs_dir: Path) -> tuple[pd.DataFrame, Path]:
    table = compare_table(runs_dir)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    path = runs_dir / "compare.csv"
    atomic_write_text(path, buf.getvalue())
    return table, path


def baseline_verdicts(table: pd.DataFrame) -> list[str]:
    """One line per pretrained run that has a matching baseline: how far its fine-tuned accuracy moved, and
    whether that is more than the run-to-run noise says it could be by chance."""
    rows = table.to_dict("records")
    by_version = {row["version"]: row for row in rows}
    lines = []
    for row in rows:
        if is_missing(row.get("vs_baseline")):
            continue
        base = by_version[row["baseline"]]
        lines.append(f"{row['version']} ({row['task']}): val_acc {fmt_pct(row['val_acc'])}%{_spread(row)}, "
                     f"{100 * float(row['vs_baseline']):+.2f} points vs baseline {row['baseline']}{_spread(base, short=True)}"
                     f"; {_noise_verdict(row, base)}")
    return lines


def _runs(row) -> int:
    return 0 if is_missing(row.get("runs")) else int(row["runs"])


def _spread(row, short: bool = False) -> str:
    if _runs(row) < 2:
        return " (1 run)"
    std = 100 * float(row["val_acc_std"])
    return f" (± {std:.2f}, {_runs(row)} runs)" if short else f" ± {std:.2f} over {_runs(row)} runs"


def _noise_verdict(row, base) -> str:
    """Compare the difference of means with two standard errors of that difference (each side's sample std
    over its runs); with a single run on either side there is no spread to judge by."""
    if _runs(row) < 2 or _runs(base) < 2:
        return "one run on a side: repeat with RUNS=3 or more to tell a gain from noise"
    se = math.sqrt(float(row["val_acc_std"]) ** 2 / _runs(row) + float(base["val_acc_std"]) ** 2 / _runs(base))
    if abs(float(row["vs_baseline"])) > 2 * se:
        return f"beyond two standard errors ({100 * 2 * se:.2f} points)"
    return f"within two standard errors ({100 * 2 * se:.2f} points): not yet told apart from noise"


def format_table(table: pd.DataFrame) -> str:
    """Compact text for the terminal: percentages for accuracies, blanks for missing values."""
    show = table.copy()
    for col in ("pretext_val_metric", "pretext_chance", "pretrain_knn_acc", "pretrain_knn_init", "val_acc", "val_acc_std", "knn_acc", "linear_acc", "eval_acc"):
        show[col] = [fmt_pct(v) for v in show[col]]
    show["vs_baseline"] = ["" if is_missing(v) else f"{100 * float(v):+.2f}" for v in show["vs_baseline"]]
    for col in ("size", "pretrain_epochs", "transfer_epochs", "runs"):
        show[col] = ["" if is_missing(v) else str(int(v)) for v in show[col]]
    for col in [c for c in show.columns if c.endswith("_wall_s")]:
        show[col] = ["" if is_missing(v) else f"{float(v):.0f}" for v in show[col]]
    show = show.astype(object).where(show.notna(), "").astype(str).replace({"None": "", "nan": ""})
    return show.to_string(index=False) if len(show) else "(no runs yet)"


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def fmt_pct(v) -> str:
    return "" if is_missing(v) else f"{100 * float(v):.2f}"


def plot_accuracies(table: pd.DataFrame):
    """Did pretraining help? Fine-tuned val accuracy (± std over repeats), kNN and linear probe per version."""
    import matplotlib.pyplot as plt
    import numpy as np

    done = table[table["val_acc"].notna()]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(done) + 2), 3.5), layout="constrained")
    x = np.arange(len(done))
    for offset, col, label in ((-0.27, "val_acc", "fine-tuned val"), (0.0, "knn_acc", "kNN"), (0.27, "linear_acc", "linear probe")):
        values = done[col].astype(float).fillna(0).to_numpy()
        err = done["val_acc_std"].astype(float).fillna(0).to_numpy() if col == "val_acc" else None
        ax.bar(x + offset, 100 * values, width=0.26, yerr=None if err is None else 100 * err, capsize=3, label=label)
    ax.set_xticks(x, [f"{v}\n{t or ''}" for v, t in zip(done["version"], done["task"])])
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    return fig
