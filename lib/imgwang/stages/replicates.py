"""Pretraining replicates: `make pipeline SEEDS=3` repeats pretrain -> transfer with different seeds.

RUNS repeats only the fine-tuning of one pretrained encoder, so it never measures how much the result
depends on the pretraining seed, and a verdict over RUNS speaks for that one encoder. SEEDS=n makes n
versions, one per pretraining seed, recorded as one group in run.json (`group`); `make compare` treats
the group as one entry and each encoder (the mean over its fine-tuning runs) as one replicate.

Seeds: replicate k pretrains with SEED + k and fine-tunes with SEED + k * RUNS, SEED + k * RUNS + 1, ...,
so no two fine-tuning runs of a group share a seed (for FROM=none each run is its own random encoder).
Names: with VERSION=name the versions are name-seed<pretraining seed> and the group is `name`; without,
they are the next free v<n> .. v<n+k-1> and the group is "v<n>-v<n+k-1>".
"""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..core.errors import ConfigError
from ..spec.checks import positive_int


def count(seeds, stage: str) -> int:
    """SEEDS as a number (1 when empty); only a pipeline repeats its pretraining."""
    if seeds in (None, ""):
        return 1
    n = positive_int("seeds", seeds)
    if n > 1 and stage != "pipeline":
        raise ConfigError(f"SEEDS={seeds} repeats the whole pipeline (pretrain -> transfer -> ...): use `make pipeline SEEDS={n}`")
    return n


def seeds(seed: int, k: int, n_runs: int) -> dict[str, int]:
    """Seeds of replicate k: pretraining, and the first fine-tuning run (later runs count up from it)."""
    return {"pretrain": seed + k, "transfer": seed + k * n_runs}


def names(version: str, n: int, seed: int, runs_dir: Path) -> tuple[str, list[str]]:
    """(group, the n versions) for a replicate set; ConfigError when one of the versions already exists."""
    if version:
        runs.check_version_name(version)
        members = [f"{version}-seed{seed + k}" for k in range(n)]
        group = version
    else:
        first = int(runs.next_version(runs_dir)[1:])
        members = [f"v{first + k}" for k in range(n)]
        group = f"{members[0]}-{members[-1]}"
    taken = [m for m in members if (Path(runs_dir) / m).exists()]
    if taken:
        raise ConfigError(f"SEEDS: {', '.join(taken)} already exist{'s' if len(taken) == 1 else ''} in {runs_dir}; choose another VERSION")
    return group, members


def mark_group(run_dir: Path, group: str, index: int, of: int) -> None:
    """run.json: this version is replicate `index` of `of` in `group` (what make compare groups by)."""
    def change(info):
        info.update(group=group, replicate={"index": index, "of": of})

    run_dir.mkdir(parents=True, exist_ok=True)
    runs.update_run_json(run_dir, change)
