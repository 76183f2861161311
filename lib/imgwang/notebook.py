"""The few helpers every stage notebook calls first and last: resolve parameters, glue scraps."""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import runs
from .stages.spec import stage_spec


def start(stage: str, namespace: dict) -> tuple[dict, Path]:
    """The stage's parameters, picked by their spec names from the notebook's namespace (`globals()`), and the
    run folder (created). Under bin/stage.py the values arrive resolved and are used as they are; run by hand
    in Jupyter, what is left empty is resolved by the same function bin/stage.py uses."""
    from .stages.plan import resolve_parameters

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub: weights are never downloaded
    spec = stage_spec(stage)
    cfg = {name: namespace[name] for name in spec.names}
    if not is_resolved(spec, cfg):
        runs_dir = Path(cfg["runs_dir"])
        version = cfg["version"] or (runs.next_version(runs_dir) if spec.starts_version else runs.newest_version(runs_dir))
        defaults = spec.defaults()
        given = {k: v for k, v in cfg.items() if v != defaults[k]}
        cfg = {**cfg, **resolve_parameters(stage, given, runs_dir, version)}
    if "task" in cfg and "crop_scale" in cfg:  # a task that cuts its own views keeps no loader augmentation
        from .data import loader_augment

        loader_augment.apply(cfg, task=cfg["task"])
    run_dir = Path(cfg["runs_dir"]) / cfg["version"]
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"{stage} in {run_dir}: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("version", "runs_dir")))
    take_thread_share(stage, cfg, run_dir)
    return cfg, run_dir


def is_resolved(spec, cfg: dict) -> bool:
    """bin/stage.py always passes a version, FROM and every data-dependent value; by hand they start empty."""
    empty = (None, "", 0, 0.0)
    return (cfg["version"] not in empty and cfg.get("from_version", "x") not in empty
            and all(cfg[p.name] not in empty for p in spec.params if p.by_data))


def take_thread_share(stage: str, cfg: dict, run_dir: Path) -> None:
    """This kernel's share of the CPU cores (imgwang.threads), or THREADS; printed and recorded in run.json."""
    from . import threads
    from .device import resolve_device

    device = resolve_device(cfg.get("device") or "auto").type
    threads.start_stage(cfg.get("threads"), device, run_dir, stage)


def to_plain(value):
    """numpy / torch scalars and arrays -> Python types, as scrapbook needs. NaN and infinities become the
    strings 'nan' / 'inf', which is what the kernel's message packer turns them into anyway (JSON has no NaN),
    but only after a warning that the saved notebook would show."""
    if hasattr(value, "tolist"):
        return to_plain(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf', as jupyter_client's json_clean writes them
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
