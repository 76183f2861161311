"""`make compare`: one row per run version from its glued scraps and run.json, one more per group of
pretraining replicates, and for each pretrained entry its verdict against a baseline (stages/verdicts.py).

A failed or partial run shows what it has and its status; a broken notebook never breaks the table.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from ..core import atomic
from ..core.plain import from_plain
from ..evaluate.stats import pooled_std, sample_std
from ..runs import STAGES, read_run_json, reconcile, stage_record, versions
from ..spec import STAGES as SPEC
from ..spec import Scraps, scrap_stage
from .verdicts import build_entries, finetune_settings, judge

COLUMNS = [
    "version", "status", "task", "arch", "data", "split", "size", "pretrain_epochs", "pretrain_on_val", "transfer_epochs", "group",
    "sweep", "point", "seed",
    "from", "pretext_metric", "pretext_val_metric", "pretext_chance", "pretrain_knn_acc", "pretrain_knn_init",
    "embedding_std", "val_acc", "val_acc_std", "finetune_std", "encoders", "runs", "train_bs", "steps_per_epoch", "knn_acc", "linear_acc",
    "linear_wd", "linear_cv_acc",
    "knn_acc_random", "knn_acc_random_mean", "knn_acc_random_sd", "knn_acc_pixels", "linear_acc_pixels", "eval_acc",
    "baseline", "vs_baseline", "ci_low", "ci_high", "p_value", "p_holm",
    "verdict", "pretrain_wall_s", "transfer_wall_s", "evaluate_wall_s", "review_wall_s",
]
ACCURACIES = ("pretext_val_metric", "pretext_chance", "pretrain_knn_acc", "pretrain_knn_init", "val_acc", "val_acc_std",
              "finetune_std", "knn_acc", "linear_acc", "linear_cv_acc", "knn_acc_random", "knn_acc_random_mean",
              "knn_acc_random_sd", "knn_acc_pixels", "linear_acc_pixels", "eval_acc")
DIFFERENCES = ("vs_baseline", "ci_low", "ci_high")
# A group row shows the mean over its members of these (the test itself uses the fine-tuning runs).
GROUP_MEANS = ("pretext_val_metric", "pretrain_knn_acc", "pretrain_knn_init", "knn_acc", "linear_acc", "knn_acc_random",
               "knn_acc_pixels", "linear_acc_pixels", "eval_acc", "pretrain_wall_s", "transfer_wall_s", "evaluate_wall_s", "review_wall_s")


def read_scraps(notebook: Path) -> dict:
    """Scraps glued in an executed notebook ({} when it is missing or unreadable)."""
    if not notebook.exists():
        return {}
    try:
        import scrapbook as sb

        return from_plain(sb.read_notebook(str(notebook)).scraps.data_dict)
    except Exception as e:  # a half-written or hand-edited notebook must not break the table
        return {"_error": f"{type(e).__name__}: {e}"}


def stage_scraps(run_dir: Path, stage: str) -> Scraps:
    """The scraps of one stage of a run, readable only by the names the stage spec declares."""
    return Scraps(stage, read_scraps(run_dir / STAGES[stage]))


def run_scraps(run_dir: Path) -> dict[str, dict]:
    return {stage: stage_scraps(run_dir, stage) for stage in STAGES}


def run_status(run_dir: Path, scraps: dict[str, dict]) -> str:
    """'complete' when all four stages are done; else the stages' states, e.g. 'pretrain:done transfer:failed'.
    A stage left `running` by a process that is gone is marked `interrupted (process gone)` first."""
    reconcile(run_dir)
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
    """The run's scraps as one row; keys starting with _ are for the verdicts, not the table."""
    scraps = run_scraps(run_dir)
    pre, tra, ev, rev = (scraps[s] for s in STAGES)
    pre_cfg, tra_cfg = pre.get("config", {}), tra.get("config", {})
    any_cfg = pre_cfg or tra_cfg or ev.get("config", {}) or {}
    accs = [float(a) for a in tra.get("val_accs", []) if not is_missing(a)]
    info = read_run_json(run_dir)
    sweep = info.get("sweep") or {}  # a point (or the baseline) of `make sweep` (stages/sweep.py)
    return {
        "version": run_dir.name,
        "status": run_status(run_dir, scraps),
        "group": info.get("group"),
        "sweep": sweep.get("name"),
        "point": sweep.get("point"),  # 'patch_frac=0.25 pct_pos=0.5'; the baseline's: 'baseline'
        "task": pre.get("task", pre_cfg.get("task", "none" if tra.get("from_version") == "none" else None)),
        "arch": any_cfg.get("arch"),
        "data": any_cfg.get("data"),
        "split": (tra_cfg.get("split") or "val") if tra_cfg else None,
        "size": tra_cfg.get("size", pre_cfg.get("size")),
        "pretrain_epochs": pre_cfg.get("epochs"),
        "pretrain_on_val": pre_cfg.get("pretrain_on_val", False) if pre_cfg else None,  # val images seen, unlabelled
        "transfer_epochs": tra_cfg.get("epochs"),
        "seed": pre_cfg.get("seed", tra_cfg.get("seed")),  # the pretraining seed, when there was pretraining
        "from": tra.get("from_version"),
        "pretext_metric": pre.get("pretext_metric_name"),
        "pretext_val_metric": pre.get("pretext_val_metric"),
        "pretext_chance": pre.get("pretext_chance"),
        "pretrain_knn_acc": pre.get("pretrain_knn_acc"),
        "pretrain_knn_init": pre.get("pretrain_knn_init"),  # the untrained encoder's: the bar to clear
        "embedding_std": pre.get("embedding_std"),  # collapse monitor: about 1/sqrt(d) healthy, 0 collapsed
        "val_acc": tra.get("val_acc"),
        "val_acc_std": tra.get("val_acc_std") if len(accs) > 1 else None,  # one run measures no spread
        "finetune_std": tra.get("val_acc_std") if len(accs) > 1 else None,
        "runs": len(accs) or None,
        "train_bs": tra.get("train_bs"),
        "steps_per_epoch": tra.get("steps_per_epoch"),
        "knn_acc": ev.get("knn_acc"),
        "linear_acc": ev.get("linear_acc"),
        "linear_wd": ev.get("linear_wd"),  # the probe's L2 strength, chosen by CV on train
        "linear_cv_acc": ev.get("linear_cv_acc"),
        "knn_acc_random": ev.get("knn_acc_random"),  # the run's own seed's random init, and the spread over inits
        "knn_acc_random_mean": ev.get("knn_acc_random_mean"),
        "knn_acc_random_sd": ev.get("knn_acc_random_sd") if len(ev.get("knn_acc_random_inits") or []) > 1 else None,
        "knn_acc_pixels": ev.get("knn_acc_pixels"),
        "linear_acc_pixels": ev.get("linear_acc_pixels"),
        "eval_acc": ev.get("eval_acc"),
        **{f"{s}_wall_s": scraps[s].get(f"{s}_wall_s") for s in STAGES},
        "_accs": accs,
        "_finetune": finetune_settings(tra_cfg),
    }


def compare_table(runs_dir: Path) -> pd.DataFrame:
    rows = [compare_row(runs_dir / v) for v in versions(runs_dir)]
    add_source_tasks(rows)
    entries = build_entries(rows)
    judge(entries)
    out = list(rows)
    for entry in entries:
        if entry.grouped:
            row = group_row(entry)
            last = next(i for i, r in enumerate(out) if r is entry.members[-1])
            out.insert(last + 1, row)
        else:
            row = entry.first
        row.update(entry.stats, vs_baseline=entry.stats.get("diff"))
    for row in rows:
        if row.get("group") and not row.get("verdict"):
            row["verdict"] = f"(in group {row['group']})"
    return pd.DataFrame(out, columns=COLUMNS)


def group_row(entry) -> dict:
    """One row for a group of pretraining replicates: the mean over its encoders, both spreads."""
    members = entry.members
    first = members[0]
    row = {k: first.get(k) for k in ("task", "arch", "data", "split", "size", "pretrain_epochs", "transfer_epochs", "train_bs",
                                      "steps_per_epoch", "pretext_metric", "pretext_chance", "sweep", "point")}
    values = entry.values
    row.update(
        version=entry.name, group=entry.name, status=f"group of {len(members)}: {' '.join(r['version'] for r in members)}",
        seed=" ".join(str(r["seed"]) for r in members), **{"from": "none" if entry.baseline else "(own)"},
        val_acc=float(sum(values) / len(values)), val_acc_std=sample_std(values), runs=entry.n_runs,
        encoders=None if entry.baseline else len(members), finetune_std=pooled_std(entry.runs_per_encoder),
    )
    for col in GROUP_MEANS:
        present = [float(r[col]) for r in members if not is_missing(r.get(col))]
        row[col] = sum(present) / len(present) if present else None
    return row


def add_source_tasks(rows: list[dict]) -> None:
    """A run fine-tuned from another version's encoder shows that version's pretext task (and whether it
    pretrained on val images)."""
    by_version = {row["version"]: row for row in rows}
    for row in rows:
        source = by_version.get(row["from"]) if row["from"] not in (None, "none", row["version"]) else None
        if source is not None and is_missing(row["task"]):
            row["task"] = source["task"]
        if source is not None and is_missing(row["pretrain_on_val"]):
            row["pretrain_on_val"] = source["pretrain_on_val"]


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
    from ..evaluate.monitor import knn_series

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
    atomic.write_text(path, buf.getvalue())
    return table, path


def baseline_verdicts(table: pd.DataFrame) -> list[str]:
    """One line per pretrained entry (a version, or a group of pretraining replicates): its difference from
    the newest baseline fine-tuned alike, with a 95% CI and Welch's p, or why there is none."""
    lines = []
    for row in table.to_dict("records"):
        text = row.get("verdict")
        if is_missing(text) or text == "(a baseline)" or str(text).startswith("(in group"):
            continue
        task = "" if is_missing(row.get("task")) else f" ({row['task']})"
        lines.append(f"{row['version']}{task}: {text}")
    return lines


def format_table(table: pd.DataFrame) -> str:
    """Compact text for the terminal: percentages for accuracies, blanks for missing values."""
    show = table.drop(columns=["verdict"])  # printed as lines below the table
    for col in ACCURACIES:
        show[col] = [fmt_pct(v) for v in show[col]]
    show["linear_wd"] = ["" if is_missing(v) else f"{float(v):.1e}" for v in show["linear_wd"]]
    for col in DIFFERENCES:
        show[col] = ["" if is_missing(v) else f"{100 * float(v):+.2f}" for v in show[col]]
    for col in ("p_value", "p_holm"):
        show[col] = ["" if is_missing(v) else f"{float(v):.3f}" for v in show[col]]
    show["embedding_std"] = ["" if is_missing(v) else f"{float(v):.4f}" for v in show["embedding_std"]]
    for col in ("size", "pretrain_epochs", "transfer_epochs", "runs", "encoders", "train_bs", "steps_per_epoch"):
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
