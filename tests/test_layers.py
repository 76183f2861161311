"""The house: every import in lib/imgwang points down the layers (docs: architecture), read from the source."""

import ast
from pathlib import Path

from conftest import REPO

LIB = REPO / "lib"
# Lowest first; a module may import its own layer and the ones below, never one above.
LAYERS = {
    "imgwang.core": 0,  # small infrastructure: atomic writes, clock, errors, secrets, device, threads, interrupts
    "imgwang.spec": 1,  # the stage spec: parameters, defaults, checks, Make variables
    "imgwang.runs": 2,  # run folders, run.json, their locks and version claims
    "imgwang.data": 3, "imgwang.models": 3, "imgwang.distributed": 3,  # tensors, files, processes
    "imgwang.tasks": 4, "imgwang.train": 4, "imgwang.evaluate": 4,
    "imgwang.stages": 5,  # resolve a configuration once, run a stage, drive pipelines
    "imgwang.notebook": 6,  # what the notebooks call first and last
}


def layer(module: str) -> int | None:
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len, default=None)
    return LAYERS[best] if best else None


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module imported, line) for every import of the project in the file, lazy ones included."""
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("imgwang")]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.startswith("imgwang"):
                out += [(f"{module}.{a.name}" if layer(f"{module}.{a.name}") is not None and module == "imgwang" else module,
                         node.lineno) for a in node.names]
    return out


def edges() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted((LIB / "imgwang").rglob("*.py")):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        here = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out += [(here, target, line) for target, line in imports(path)]
    return out


def test_every_module_has_a_layer():
    unplaced = sorted({m for m, _, _ in edges() if layer(m) is None and m != "imgwang"})
    assert not unplaced, f"give these a layer in LAYERS: {unplaced}"


def test_no_import_points_up():
    upward = [f"{here} (line {line}) imports {target}" for here, target, line in edges()
              if layer(here) is not None and layer(target) is not None and layer(target) > layer(here)]
    assert not upward, "\n".join(upward)
