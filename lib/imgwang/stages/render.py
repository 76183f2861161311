"""The stage spec rendered for people: the notebooks' parameters cells and `make help`.

    python -m imgwang.stages.render            # what `make help` prints after the targets
    python -m imgwang.stages.render --write    # rewrite the notebooks' parameters cells from the spec
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..spec import STAGES, SWEEP_VARS, MakeVar, make_vars

CELL_HEADER = "# Parameters (papermill injects new values below this cell)"
CONFIG_LINE = ("config: dict = {}  # set by bin/stage.py: the configuration it resolved, taken as it is; "
               "empty (run by hand): the values above are resolved")


def _literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def parameters_source(stage: str) -> str:
    """The notebook's parameters cell: what papermill reads and `papermill --help-notebook` shows."""
    lines = [CELL_HEADER]
    lines += [f"{p.name}: {p.type.__name__} = {_literal(p.default)}  # {p.doc}" for p in STAGES[stage].params]
    return "\n".join([*lines, CONFIG_LINE])


def write_parameters_cells(notebooks: Path) -> list[str]:
    """Rewrite each stage notebook's parameters cell from the spec; returns the notebooks changed."""
    import nbformat

    changed = []
    for stage in STAGES.values():
        path = notebooks / stage.notebook
        book = nbformat.read(path, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        if cell.source != parameters_source(stage.name):
            cell.source = parameters_source(stage.name)
            nbformat.write(book, path)
            changed.append(path.name)
    return changed


def _data_defaults(var: MakeVar) -> str:
    """` (sample / real data: pretrain 3 / 20; transfer 5 / 5)` when the default differs between stages."""
    groups: dict[tuple, list[str]] = {}
    for stage in STAGES.values():
        p = stage.param(var.dest)
        if p is not None and p.make == var.name and p.by_data:
            groups.setdefault(p.by_data, []).append(stage.name)
    if len(groups) < 2:
        return ""
    return " (sample / real data: " + "; ".join(f"{', '.join(s)} {a} / {b}" for (a, b), s in groups.items()) + ")"


def _inherited_by(var: MakeVar) -> str:
    stages = [s.name for s in STAGES.values() if any(var.dest in rule.keys for rule in s.inherits)]
    return f"; {', '.join(stages)}: by default as the version's earlier stages" if stages else ""


def help_text() -> str:
    lines = ["Variables (all optional; bin/stage.py takes them as NAME=value or --name value):"]
    for var in make_vars():
        stages = [s.name for s in STAGES.values() if s.param(var.dest) is not None and s.param(var.dest).make]
        where = f" [{', '.join(stages)}]" if stages and len(stages) < len(STAGES) else ""
        lines.append(f"  {var.name:<10}{var.doc}{_data_defaults(var)}{_inherited_by(var)}{where}")
    lines.append('  P        further notebook or task parameters, e.g. P="-p pct_pos 0.7 -p patch_frac 0.3"')
    lines += [f"  {var.name:<10}{var.doc}" for var in SWEEP_VARS]
    try:  # the tasks need torch: listed when the venv exists
        from ..tasks import task_names

        lines.append(f"Pretext tasks (TASK): {' '.join(task_names())}")
    except ImportError:
        pass
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        folder = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[3] / "notebooks"
        print("rewritten:", ", ".join(write_parameters_cells(folder)) or "none (all agree with the spec)")
    else:
        print(help_text())
