"""The few helpers every stage notebook calls first and last: resolve parameters, glue scraps."""

from __future__ import annotations

import os
from pathlib import Path

from . import runs
from .core.plain import to_plain
from .spec import stage_spec


def start(stage: str, namespace: dict) -> tuple[dict, Path]:
    """The stage's configuration and its run folder (created). Under bin/stage.py the notebook's `config`
    parameter holds the configuration the driver resolved, taken as it is; run by hand in Jupyter (`config`
    empty), the values of the notebook's namespace (`globals()`) are resolved by the same function."""
    from .stages.resolve import resolve

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub: weights are never downloaded
    spec = stage_spec(stage)
    cfg = namespace.get("config")
    if not cfg:
        runs_dir = Path(namespace["runs_dir"])
        version = namespace["version"] or (runs.next_version(runs_dir) if spec.starts_version else runs.newest_version(runs_dir))
        defaults = spec.defaults()
        cfg = resolve(stage, {n: namespace[n] for n in spec.names if namespace[n] != defaults[n]},
                      runs_dir=runs_dir, version=version)
    run_dir = Path(cfg["runs_dir"]) / cfg["version"]
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"{stage} in {run_dir}: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("version", "runs_dir")))
    take_thread_share(stage, cfg, run_dir)
    return cfg, run_dir


def take_thread_share(stage: str, cfg: dict, run_dir: Path) -> None:
    """This kernel's share of the CPU cores (imgwang.core.threads), or THREADS; printed and recorded in run.json."""
    from .core import threads
    from .core.device import resolve_device

    device = resolve_device(cfg.get("device") or "auto").type
    threads.start_stage(cfg.get("threads"), device, lambda share: runs.update_stage(run_dir, stage, threads=share), stage)


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
