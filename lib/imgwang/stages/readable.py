"""The compare table a person reads: the few columns that answer "did pretraining help?", formatted, grouped by
sweep or replicate group, with the versions that failed, are running or were interrupted listed apart in one short
line each (a version whose stages so far are all done is in the table, whichever stages it ran).
The whole table (every column, raw numbers) stays in compare.csv."""

from __future__ import annotations

import math

import pandas as pd

from ..evaluate.stats import p_text

SHOWN = ["task", "arch", "data", "epochs", "pretext vs chance", "val_acc", "kNN", "probe", "kNN random", "kNN pixels",
         "probe pixels", "verdict"]


def finished(status) -> bool:
    """Complete, or every stage run so far done: issue-style runs of pretrain, transfer and evaluate without review,
    or a pretrain alone, are read like complete ones (their missing stages leave cells empty). A review left stale by
    a newer evaluate still counts as done for the figures shown here."""
    text = "" if missing(status) else str(status)
    if text.startswith("complete") or text.startswith("group of"):
        return True
    states = [part.partition(":")[2] for part in text.split()]
    return bool(states) and all(":" in part for part in text.split()) and all(s in ("done", "stale") for s in states)


def readable_table(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """(the versions and groups whose stages so far are all done, as text, indexed by (group, version); one line per
    version with a stage that failed, is running or was interrupted)."""
    rows, others = [], []
    for row in table.to_dict("records"):
        if not finished(row.get("status")):
            others.append(f"{row['version']}: {row.get('status') or 'no status'}")
            continue
        rows.append({"group": group_of(row), "version": row["version"], **shown(row)})
    columns = SHOWN + (["embedding_std"] if "embedding_std" in table.columns else [])
    if not rows:
        return pd.DataFrame(columns=["group", "version", *columns]).set_index(["group", "version"]), others
    order = list(dict.fromkeys(r["group"] for r in rows))  # groups where they first appear, members together
    rows.sort(key=lambda r: order.index(r["group"]))
    return pd.DataFrame(rows, columns=["group", "version", *columns]).set_index(["group", "version"]), others


def group_of(row: dict) -> str:
    for key in ("sweep", "group"):
        if not missing(row.get(key)):
            return f"{key} {row[key]}"
    return ""


def shown(row: dict) -> dict:
    out = {key: text(row.get(key)) for key in ("task", "arch", "data")}
    pre, ft = row.get("pretrain_epochs"), row.get("transfer_epochs")
    out["epochs"] = f"{integer(pre) or '-'} + {integer(ft)}" if not missing(ft) else integer(pre)
    metric, chance = row.get("pretext_val_metric"), row.get("pretext_chance")
    out["pretext vs chance"] = "" if missing(metric) or missing(chance) else (
        f"{float(metric):.3f} ({float(metric) - float(chance):+.3f})")
    acc, std = row.get("val_acc"), row.get("val_acc_std")
    out["val_acc"] = "" if missing(acc) else pct(acc) + ("" if missing(std) else f" ± {100 * float(std):.2f}")
    for key, col in (("knn_acc", "kNN"), ("linear_acc", "probe"), ("knn_acc_pixels", "kNN pixels"),
                     ("linear_acc_pixels", "probe pixels")):
        out[col] = pct(row.get(key))
    out["kNN random"] = random_reference(row)
    out["verdict"] = short_verdict(row)
    if "embedding_std" in row:
        out["embedding_std"] = "" if missing(row["embedding_std"]) else f"{float(row['embedding_std']):.3f}"
    return out


def random_reference(row: dict) -> str:
    """The random-init kNN over its inits as 'mean ± sd' where evaluate scored several, else the run's own seed's."""
    mean, spread = row.get("knn_acc_random_mean"), row.get("knn_acc_random_sd")
    if not missing(mean) and not missing(spread):
        return f"{pct(mean)} ± {100 * float(spread):.2f}"
    return pct(row.get("knn_acc_random"))


def short_verdict(row: dict) -> str:
    """'+3.44 points, p = 0.13' (Holm's p when the baseline is shared), or what stands in its place; the full
    sentence is among the verdict lines."""
    verdict, diff = row.get("verdict"), row.get("vs_baseline")
    if missing(verdict):
        return ""
    if str(verdict) == "(a baseline)":
        return "baseline"
    if str(verdict).startswith("(in group"):
        return "in group"
    if missing(diff):
        return "no baseline alike"
    p = row.get("p_holm") if not missing(row.get("p_holm")) else row.get("p_value")
    if missing(p):
        return f"{100 * float(diff):+.2f} points, no p (1 run)"
    mark = " *" if float(p) < 0.05 else ""
    return f"{100 * float(diff):+.2f} points, {p_text(float(p))}{mark}"  # worded as the verdict sentence


def pct(v) -> str:
    return "" if missing(v) else f"{100 * float(v):.2f}%"


def integer(v) -> str:
    return "" if missing(v) else str(int(float(v)))


def text(v) -> str:
    return "" if missing(v) else str(v)


def missing(v) -> bool:
    return v is None or v == "" or v == "nan" or (isinstance(v, float) and math.isnan(v))
