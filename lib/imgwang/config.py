"""Resolved parameters of a stage: the defaults that depend on the data, and checks of every value.

The notebooks' parameters cells leave data-dependent values empty (0 or ""); `resolve` fills them from the
stage spec's `by_data` so that `DATA=sample` runs in minutes on a laptop CPU while Imagewang gets the
leaderboard protocol's settings, then runs each parameter's check. bin/stage.py calls it once (through
stages/plan.py), before any compute, and the notebook receives the values resolved; a notebook run by hand in
Jupyter resolves what it left empty through the same path (notebook.start).
"""

from __future__ import annotations

from .checks import COMET_MODES, non_negative_int, positive_float, positive_int  # noqa: F401  (also imported from here)
from .stages.spec import stage_spec


def resolve(stage: str, params: dict) -> dict:
    """Fill data-dependent defaults and check the stage's values; returns a new dict. Keys the stage does not
    declare pass through unchecked; a declared key that is missing stays missing unless it depends on the data."""
    spec = stage_spec(stage)
    cfg = dict(params)
    real = 0 if cfg.get("data", "imagewang") == "sample" else 1
    for p in spec.params:
        if p.by_data and cfg.get(p.name) in (None, "", 0, 0.0):
            cfg[p.name] = p.by_data[real]
        if p.check and p.name in cfg:
            cfg[p.name] = p.check(p.name, cfg[p.name])
    return cfg


def storage_size(size: int) -> int:
    """Side of the decode-once cache: a little above SIZE so random crops keep detail."""
    return int(round(size * 1.25))
