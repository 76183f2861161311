"""The few helpers every stage notebook calls first and last: resolve parameters, glue scraps."""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import config, runs


def start(stage: str, params: dict) -> tuple[dict, Path]:
    """Resolved config and the run folder (created). Works under papermill and when run by hand."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub: weights are never downloaded
    cfg = config.resolve(stage, params)
    runs_dir = Path(cfg["runs_dir"])
    if not cfg.get("version"):
        cfg["version"] = runs.next_version(runs_dir) if stage == "pretrain" else runs.newest_version(runs_dir)
    run_dir = runs_dir / cfg["version"]
    run_dir.mkdir(parents=True, exist_ok=True)
    if stage in ("transfer", "evaluate") and not cfg.get("from_version"):
        recorded = runs.read_run_json(run_dir).get("stages", {}).get("transfer", {}).get("config", {})
        cfg["from_version"] = recorded.get("from_version") or cfg["version"]
    print(f"{stage} in {run_dir}: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("version", "runs_dir")))
    return cfg, run_dir


def to_plain(value):
    """numpy / torch scalars and arrays -> Python types, as scrapbook needs (NaN stays a float)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return value
    return value


def glue(**scraps) -> None:
    import scrapbook as sb

    for name, value in scraps.items():
        sb.glue(name, to_plain(value))


def glue_figure(name: str, fig) -> None:
    """Show a figure inline and keep it as a scrap (display=True stores its PNG in the notebook)."""
    import matplotlib.pyplot as plt
    import scrapbook as sb

    sb.glue(name, fig, display=True)
    plt.close(fig)
