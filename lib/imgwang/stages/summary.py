"""An executed notebook opens on its answer: a summary cell on top, the template's parameters folded away.

Opened in JupyterLab, a saved stage notebook used to start with two parameter cells (the template's
documented defaults, then papermill's injected values) filling the first screen, and the result several
screens down. After execution (imgwang.stages.kernel) the saved copy is post-processed:
- the template's `parameters` cell keeps its tag (papermill can still run the notebook again) but its
  source is hidden (JupyterLab's cell metadata `jupyter.source_hidden`: one click shows it); papermill's
  injected cell, the configuration this run resolved (`config`), stays in view;
- a markdown cell under the title gives the stage's headline figures, read from the scraps the notebook
  glued (pretrain: pretext metric vs chance, kNN monitor vs the untrained encoder; transfer: top-1 ± std and
  the leaderboard line; evaluate: kNN and probe vs the random-init and raw-pixel references; review: the
  mistakes and worst classes; compare: each verdict), and links to the sections below. The links use
  JupyterLab's heading anchors: the heading's text with spaces turned into '-'.
A stage that stopped says so on top; whatever it glued before stopping is still summarised.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

SUMMARY_TAG = "imgwang-summary"  # marks the cell, so post-processing twice replaces it instead of adding one


def open_on_answer(path, status: str = "done", error: str = "") -> bool:
    """Hide the template's parameters cell and put the summary under the title of the saved notebook at
    `path`, in place (atomically). -> False when there is no notebook (papermill never wrote it)."""
    import nbformat

    from ..core.atomic import write_text

    path = Path(path)
    if not path.exists():
        return False
    nb = nbformat.read(path, as_version=4)
    hide_parameters(nb)
    nb.cells = [c for c in nb.cells if SUMMARY_TAG not in c.metadata.get("tags", [])]
    cell = nbformat.v4.new_markdown_cell(summary_markdown(path, nb, status, error))
    cell.metadata["tags"] = [SUMMARY_TAG]
    title = 1 if nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ") else 0
    nb.cells.insert(title, cell)
    write_text(path, nbformat.writes(nb))
    return True


def hide_parameters(nb) -> None:
    """Fold the source of the template's `parameters` cell (the tag stays: papermill finds it by the tag)."""
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True


def scraps_of(nb) -> dict:
    """The notebook's glued scraps as plain values ({} when it glued none)."""
    from scrapbook.models import Notebook

    return Notebook(nb).scraps.data_dict


def anchor(heading: str) -> str:
    """JupyterLab's id for a markdown heading: its text as shown (inline markup gone), spaces -> '-'."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip())
    return text.replace(" ", "-")


def sections(nb) -> list[str]:
    """The second-level headings of the notebook's markdown cells, in order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and SUMMARY_TAG not in cell.metadata.get("tags", []):
            found += [line[3:].strip() for line in cell.source.splitlines() if line.startswith("## ")]
    return found


def summary_markdown(path: Path, nb, status: str = "done", error: str = "") -> str:
    s = scraps_of(nb)
    stage = re.sub(r"^\d+-", "", path.stem)  # 02-transfer -> transfer
    lines = [] if status == "done" else [f"**This stage {status}**: {error.splitlines()[0] if error else 'see below'}. "
                                         "The figures below are what it glued before it stopped.", ""]
    lines += [f"- {line}" for line in HEADLINES.get(stage, lambda *_: [])(s, path)] or ["- (nothing glued yet)"]
    links = " · ".join(f"[{name}](#{anchor(name)})" for name in sections(nb))
    return "\n".join(["## Summary", "", *lines, *(["", f"Sections: {links}"] if links else [])])


# --- the headline figures of each stage ---------------------------------------------------------------

def num(value) -> float:
    """A glued number (NaN and infinities arrive as the strings 'nan', 'inf'); NaN when absent."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def pct(value, digits: int = 2) -> str:
    v = num(value)
    return "n/a" if math.isnan(v) else f"{100 * v:.{digits}f}%"


def points(a, b) -> str:
    d = num(a) - num(b)
    return "" if math.isnan(d) else f"{100 * d:+.2f} points"


def pretrain_lines(s: dict, path: Path) -> list[str]:
    cfg = s.get("config", {})
    out = []
    if "task" in s:
        out.append(f"**{s['task']}** on {cfg.get('data')}, {cfg.get('arch')} at {cfg.get('size')} px, "
                   f"{len(s.get('pretrain_history', []))} of {cfg.get('epochs')} epochs")
    if "pretext_val_metric" in s:
        where = f" on {s['pretext_val_set']}" if s.get("pretext_val_set") else ""
        out.append(f"pretext {s.get('pretext_metric_name', 'metric')}{where}: **{num(s['pretext_val_metric']):.4f}** "
                   f"vs chance {num(s.get('pretext_chance')):.4f}; val loss {num(s.get('pretext_val_loss')):.4f}")
    if "pretrain_knn_acc" in s:
        out.append(f"kNN monitor on labelled train images: **{pct(s['pretrain_knn_acc'])}** vs "
                   f"{pct(s.get('pretrain_knn_init'))} for the untrained encoder "
                   f"({points(s['pretrain_knn_acc'], s.get('pretrain_knn_init'))})")
    if s.get("pretrain_note"):
        out.append(s["pretrain_note"])
    if "pretrain_wall_s" in s:
        out.append(f"{num(s['pretrain_wall_s']) / 60:.1f} min, {num(s.get('pretrain_images_per_s')):.0f} images/s")
    return out


def transfer_lines(s: dict, path: Path) -> list[str]:
    from .transfer import leaderboard_line, pretrained_on_val

    if "val_acc" not in s:
        return []
    cfg = s.get("config", {})
    result = {"val_acc": num(s["val_acc"]), "val_acc_std": num(s.get("val_acc_std")), "val_accs": s.get("val_accs", []),
              "pretrained_on_val": pretrained_on_val(path.parent.parent, s.get("from_version", "none"))}
    first, *rest = leaderboard_line({**cfg, "from_version": s.get("from_version")}, result).splitlines()
    out = [f"**{first}**", *rest]
    if s.get("from_version") == "none":
        out.append("a random-init baseline: `make compare` sets pretrained runs against it")
    if "transfer_wall_s" in s:
        out.append(f"{num(s['transfer_wall_s']) / 60:.1f} min")
    return out


def evaluate_lines(s: dict, path: Path) -> list[str]:
    if "eval_acc" not in s:
        return []
    split = s.get("split", "val")
    cfg = s.get("config", {})
    pretrained = cfg.get("from_version", "none") != "none"
    out = [f"fine-tuned classifier: {split} top-1 **{pct(s['eval_acc'])}**"]
    encoder = f"frozen encoder of {cfg.get('from_version')}" if pretrained else "frozen random-init encoder (no pretraining)"
    for key, name in (("knn_acc", "kNN"), ("linear_acc", "linear probe")):
        refs = [f"{label} {pct(s.get(f'{key}_{ref}'))} ({points(s[key], s.get(f'{key}_{ref}'))}{paired_ci(s, key, ref)})"
                for ref, label in (("random", "random-init"), ("pixels", "raw pixels")) if pretrained or ref == "pixels"]
        out.append(f"{encoder}, {name}: **{pct(s[key])}** vs {' and '.join(refs)}")
    inits = s.get("knn_acc_random_inits") or []
    if len(inits) > 1:  # the random-init bar is one draw: its spread over inits (stages.random_spread)
        stands = f"; the pretrained kNN {points(s['knn_acc'], s['knn_acc_random_mean'])} from their mean" if pretrained else ""
        out.append(f"random-init kNN over {len(inits)} inits: {pct(s['knn_acc_random_mean'])} ± "
                   f"{100 * num(s['knn_acc_random_sd']):.2f} (lowest {pct(min(inits))}, highest {pct(max(inits))}{stands})")
    return out


def paired_ci(s: dict, key: str, reference: str) -> str:
    """'; 95% CI a to b, p' of the pretrained kNN against a reference on the same images, where glued."""
    from ..evaluate.stats import p_text  # scipy: only where there is a p to write
    low, high, p = (num(s.get(f"knn_vs_{reference}_{part}")) for part in ("ci_low", "ci_high", "p_value"))
    if key != "knn_acc" or math.isnan(p):
        return ""
    ci = "" if math.isnan(low) else f"95% CI {100 * low:+.2f} to {100 * high:+.2f}, "
    return f"; {ci}{p_text(p)}"


def review_lines(s: dict, path: Path) -> list[str]:
    out = []
    if "n_val_mistakes" in s:
        out.append(f"**{s['n_val_mistakes']}** mistakes on the scoring set")
    if s.get("worst_classes"):
        out.append("worst classes: " + ", ".join(f"{name} {pct(acc, 1)}" for name, acc in s["worst_classes"]))
    return out


def compare_lines(s: dict, path: Path) -> list[str]:
    out = [f"**{s['n_runs']}** versions in the table (`compare.csv`)"] if "n_runs" in s else []
    table = path.parent / "compare.csv"
    if table.exists():
        with table.open(newline="") as f:
            verdicts = [(row["version"], row.get("verdict") or "") for row in csv.DictReader(f)]
        judged = [(v, text) for v, text in verdicts if text and not text.startswith("(")]  # not baselines, members
        unmatched = [v for v, text in judged if text.startswith("no FROM=none baseline")]
        out += [f"{v}: {text}" for v, text in judged if v not in unmatched]
        if unmatched:  # one line, not one per version: each one's reason is under "Did pretraining help?"
            out.append(f"{len(unmatched)} version(s) without a FROM=none baseline fine-tuned alike, so no verdict: "
                       f"{', '.join(unmatched)}")
    return out


HEADLINES = {"pretrain": pretrain_lines, "transfer": transfer_lines, "evaluate": evaluate_lines, "review": review_lines,
             "compare": compare_lines}
