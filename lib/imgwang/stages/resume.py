"""RESUME and FORCE across stages: which settings a resumed stage takes, where a resumed pipeline starts, and
which later stages a forced one makes stale.

RESUME=1 continues a stage with the settings run.json recorded when it started: nothing else needs to be
given, and a value given that differs from the record is refused (a run whose halves used two settings
measures neither). FORCE=1 on a stage moves aside what the later stages of the same version built from it.
"""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..core.errors import ConfigError
from ..spec import STAGES

# Recorded values that are not settings of the computation (`setting=False` in the spec): where the run lives,
# the resume flag itself, tracking.
NOT_SETTINGS = {p.name for stage in STAGES.values() for p in stage.params if not p.setting}


def recorded_settings(run_dir: Path, stage: str) -> dict:
    """The resolved parameters the stage started with; one line when there is nothing to resume."""
    record = runs.read_run_json(run_dir).get("stages", {}).get(stage, {})
    status, config = record.get("status"), record.get("config")
    if not record or not config:
        raise ConfigError(f"RESUME=1: {stage} never started in {run_dir.name}: nothing to resume (leave RESUME out)")
    if status == "done":
        raise ConfigError(f"RESUME=1: {stage} of {run_dir.name} already finished; use FORCE=1 to run it again")
    return {k: v for k, v in config.items() if k not in NOT_SETTINGS}


def differences(recorded: dict, resolved: dict) -> list[str]:
    """'SIZE=64 (given 128)' for each recorded setting that differs, task parameters by their own name. A
    parameter the record lacks (added to the stage since) is not a difference."""
    out = []
    for key in sorted(recorded):
        if key in NOT_SETTINGS or key not in resolved:
            continue
        old, new = recorded.get(key), resolved[key]
        if key == "task_params":
            for name in sorted(set(old or {}) | set(new or {})):
                a, b = (old or {}).get(name), (new or {}).get(name)
                if a != b:
                    out.append(f"{name}={a!r} (given {b!r})")
        elif old != new:
            out.append(f"{key.upper()}={old} (given {new})")
    return out


def check_same_settings(stage: str, version: str, recorded: dict, resolved: dict) -> None:
    diff = differences(recorded, resolved)
    if diff:
        raise ConfigError(f"RESUME=1: {stage} of {version} started with {', '.join(diff)}; leave them out to resume "
                          f"with the recorded settings, or start a new VERSION")


def pipeline_start(run_dir: Path, stages: list[str]) -> tuple[int, bool]:
    """`make pipeline RESUME=1`: the index of the first stage not done, and whether it has something to resume
    (a record) or starts afresh."""
    recorded = runs.read_run_json(run_dir).get("stages", {})
    for i, stage in enumerate(stages):
        status = recorded.get(stage, {}).get("status")
        if status != "done":
            return i, bool(status) and status != runs.STALE
    raise ConfigError(f"RESUME=1: every stage of {run_dir.name} is done; nothing to resume")


def dependents(run_dir: Path, stage: str) -> list[str]:
    """The later stages of this version built on `stage`'s results, transitively. A transfer that loaded
    another version's encoder (or none) is not built on this version's pretrain."""
    recorded = runs.read_run_json(run_dir).get("stages", {})
    out, todo = [], readers(stage)
    while todo:
        later = todo.pop(0)
        if later in out:
            continue
        config = recorded.get(later, {}).get("config") or {}
        if stage == "pretrain" and later == "transfer" and config.get("from_version") not in (None, "", run_dir.name):
            continue
        out.append(later)
        todo += readers(later)
    return out


def readers(stage: str) -> list[str]:
    """The stages declared built on `stage` (the spec's `built_on`)."""
    return [s.name for s in STAGES.values() if stage in s.built_on]
