"""`make sweep`: a grid over pretraining or pretext-task parameters, one pipeline per grid point and seed.

    make sweep TASK=patchwork DATA=sample SWEEP="patch_frac=0.25,0.35,0.5 pct_pos=0.5,0.7" SEEDS=2 RUNS=3

Units, each one `bin/stage.py pipeline` run in its own process (so every check, lock, record and resume of a
pipeline holds as it is):
- one per grid point and pretraining seed, version `<sweep>-<name><value>...-seed<s>`; with SEEDS > 1 the seeds
  of a point form a replicate group `<sweep>-<point>` (stages/replicates.py), which `make compare` tests as one
  entry. Unit k of a point pretrains and fine-tunes with seed SEED + k * RUNS, so its fine-tuning runs use
  SEED + k * RUNS ... SEED + k * RUNS + RUNS - 1 and no two runs of a point share a seed (replicates.py's rule
  for fine-tuning seeds; the pretraining seeds are spaced RUNS apart instead of 1 apart).
- one baseline, `<sweep>-baseline` (FROM=none, fine-tuned alike with RUNS runs), run once and shared by every
  point; compare judges each point against its sweep's own baseline, Holm-adjusted across the sweep's points.
The sweep's name is VERSION, else the next free `sweep<n>`. JOBS=n runs n units at once (each stage takes its
share of the cores, imgwang.core.threads). RESUME=1 skips finished units and continues the others (`pipeline
RESUME=1`). POINT=i runs unit i alone (of DRY=1's list): one task of a job array on shared storage.

Swept names are checked before anything runs: TASK's parameters (imgwang.tasks), or pretraining's own
parameters (spec/__init__.py) and EPOCHS / LR / BS (which a pipeline gives pretraining); a parameter that also
sets fine-tuning is refused, since the shared baseline must be fine-tuned alike. Each value is checked as the
stage would (type, range, and the task built with it).
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import runs
from ..core.errors import ConfigError
from ..spec import STAGES, checks
from .plan import truthy
from .resolve import coerce_types, parse_value

PIPELINE_SETS = {"epochs": "EPOCHS", "lr": "LR", "bs": "BS"}  # in a pipeline these Make variables set pretraining
NOT_SWEPT = {"version", "runs_dir", "seed", "task", "task_params", "data", "arch", "size", "device", "threads",
             "nproc", "nnodes", "node_rank", "master", "comet", "resume"}  # where/how a run runs, or what it is
SWEEP_OWNS = ("VERSION", "SEEDS", "SEED", "RESUME", "FROM", "FORCE")  # set per unit by the sweep


@dataclass
class Unit:
    version: str
    point: dict  # {} for the baseline
    seed: int
    words: list[str]  # bin/stage.py pipeline's words
    group: str = ""

    @property
    def label(self) -> str:
        return point_label(self.point) if self.point else "baseline"


@dataclass
class Sweep:
    name: str
    grid: dict[str, list]
    units: list[Unit] = field(default_factory=list)


def parse_grid(text: str) -> dict[str, list]:
    """'patch_frac=0.25,0.5 pct_pos=0.7' -> {'patch_frac': [0.25, 0.5], 'pct_pos': [0.7]} (values read as YAML)."""
    grid = {}
    for word in str(text or "").split():
        name, eq, values = word.partition("=")
        if not eq or not name or not values:
            raise ConfigError(f"SWEEP word {word!r} is not NAME=v1,v2,...: e.g. SWEEP=\"patch_frac=0.25,0.5 pct_pos=0.5,0.7\"")
        if name in grid:
            raise ConfigError(f"SWEEP names {name} twice")
        parsed = [parse_value(v) for v in values.split(",")]
        if any(v in (None, "") for v in parsed):
            raise ConfigError(f"SWEEP {name}={values}: an empty value")
        if len({repr(v) for v in parsed}) < len(parsed):
            raise ConfigError(f"SWEEP {name}={values}: a value given twice")
        grid[name] = parsed
    if not grid:
        raise ConfigError('SWEEP is empty: give NAME=v1,v2,..., e.g. SWEEP="patch_frac=0.25,0.5 pct_pos=0.5,0.7"')
    return grid


def check_grid(grid: dict[str, list], task: str, fixed_task_params: dict) -> dict[str, list]:
    """Every swept name known and allowed, every value of the type and range the stage or task accepts, every
    point's task buildable. Returns the values converted (e.g. '1e-3' -> 0.001)."""
    from ..tasks import get_task, is_task, task_names, task_params

    if not is_task(task):
        raise ConfigError(f"unknown TASK={task!r}; known tasks: {', '.join(task_names())}")
    own = task_params(task)
    pretrain, finetune = STAGES["pretrain"], {n for s in STAGES.values() if s.name != "pretrain" for n in s.names}
    allowed = sorted(set(own) | {n for n in pretrain.names if n not in finetune and n not in NOT_SWEPT} | set(PIPELINE_SETS))
    out = {}
    for name, values in grid.items():
        if name in own:
            out[name] = [coerce_types({name: v}, own, what="SWEEP ")[name] for v in values]
        elif name in PIPELINE_SETS or (pretrain.param(name) and name not in finetune and name not in NOT_SWEPT):
            param = pretrain.param(name)
            converted = [coerce_types({name: v}, {name: param.default}, what="SWEEP ")[name] for v in values]
            out[name] = [param.check(name, v) if param.check else v for v in converted]
        elif name in finetune or name in pretrain.names:
            raise ConfigError(f"SWEEP {name}: it sets fine-tuning or where a run runs, which the sweep's shared baseline "
                              f"must match; sweep one of: {', '.join(allowed)}")
        else:
            raise ConfigError(f"SWEEP {name}: no parameter of TASK={task} or of pretraining has that name; "
                              f"sweep one of: {', '.join(allowed)}")
    for point in points(out):  # a combination a task refuses (patch_frac with min_gap, ...)
        task_part = {k: v for k, v in point.items() if k in own}
        try:
            get_task(task, **{**fixed_task_params, **task_part})
        except ConfigError as e:
            raise ConfigError(f"SWEEP point {point_label(point)}: {e}") from None
    return out


def points(grid: dict[str, list]) -> list[dict]:
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]


def point_label(point: dict) -> str:
    """{'patch_frac': 0.25, 'pct_pos': 0.5} -> 'patch_frac0.25-pct_pos0.5' (a valid folder name)."""
    return "-".join(f"{name}{re.sub(r'[^A-Za-z0-9._]+', '_', str(value)).strip('_')}" for name, value in point.items())


def sweep_name(version: str, resume: bool, runs_dir: Path) -> str:
    """VERSION, else the next free sweep<n> (with RESUME=1: the newest)."""
    if version:
        return runs.check_version_name(version)
    numbers = [int(m.group(1)) for v in runs.versions(runs_dir) if (m := re.match(r"sweep(\d+)-", v))]
    if resume:
        if not numbers:
            raise ConfigError(f"RESUME=1: no sweep in {runs_dir} to continue; give VERSION=<sweep name>")
        return f"sweep{max(numbers)}"
    return f"sweep{max(numbers, default=0) + 1}"


def plan_sweep(words: dict, p_pairs: list[tuple[str, str]], runs_dir: Path, only: int | None = None) -> Sweep:
    """words: the Make variables given (NAME -> text), SWEEP included; only: POINT, the one unit to run. Checks
    everything the sweep itself decides; bin/stage.py checks the rest (data, arch, ...) when the first unit
    starts, before any compute."""
    for name in ("FROM", "FORCE"):
        if words.get(name):
            raise ConfigError(f"{name}={words[name]}: a sweep makes its own FROM=none baseline and never overwrites; "
                              f"RESUME=1 continues a sweep")
    resume = truthy(words.get("RESUME", ""))
    task = words.get("TASK") or STAGES["pretrain"].defaults()["task"]
    seeds = checks.positive_int("SEEDS", words.get("SEEDS") or 1)
    n_runs = checks.positive_int("RUNS", words.get("RUNS") or 1)
    seed = checks.non_negative_int("SEED", words.get("SEED") or 0)
    from ..tasks import is_task, task_params

    own = task_params(task) if is_task(task) else {}
    fixed_task = coerce_types({k: parse_value(v) for k, v in p_pairs if k in own}, own, what="task parameter ")
    grid = check_grid(parse_grid(words.get("SWEEP")), task, fixed_task)
    clash = sorted(set(grid) & ({k for k, _ in p_pairs} | {n.lower() for n in words if n.lower() in PIPELINE_SETS}))
    if clash:
        raise ConfigError(f"SWEEP {', '.join(clash)}: also given as a fixed value (P or a Make variable); give it once")
    name = sweep_name(words.get("VERSION", ""), resume, Path(runs_dir))
    shared = [f"{k}={v}" for k, v in words.items() if k not in SWEEP_OWNS and k != "SWEEP" and v != ""]
    sweep = Sweep(name, grid)
    for point in points(grid):
        group = f"{name}-{point_label(point)}"
        for k in range(seeds):
            s = seed + k * n_runs
            version = f"{group}-seed{s}"
            runs.check_version_name(version)
            swept = [f"{PIPELINE_SETS[n]}={v}" for n, v in point.items() if n in PIPELINE_SETS]
            swept_p = [w for n, v in point.items() if n not in PIPELINE_SETS for w in ("-p", n, as_word(v))]
            unit_words = [*shared, *swept, f"VERSION={version}", f"SEED={seed + k * n_runs}", *pairs(p_pairs), *swept_p]
            sweep.units.append(Unit(version, point, s, unit_words, group if seeds > 1 else ""))
    finetune = {n for st in STAGES.values() if st.name != "pretrain" for n in st.names}
    base_words = [w for w in shared if w.split("=")[0] not in ("TASK", "EPOCHS", "LR", "BS")]
    base_p = [pair for pair in p_pairs if pair[0] in finetune]  # pretraining's and the task's have no stage here
    sweep.units.append(Unit(f"{name}-baseline", {}, seed, [*base_words, f"VERSION={name}-baseline", f"SEED={seed}",
                                                          "FROM=none", *pairs(base_p)]))
    if only is not None and not 0 <= only < len(sweep.units):
        raise ConfigError(f"POINT={only}: sweep {name} has runs 0 to {len(sweep.units) - 1} (DRY=1 lists them)")
    chosen = sweep.units if only is None else [sweep.units[only]]
    existing = [u.version for u in chosen if (Path(runs_dir) / u.version).exists()]
    if existing and not resume:
        raise ConfigError(f"sweep {name} has versions already ({', '.join(existing[:3])}{', ...' if len(existing) > 3 else ''}): "
                          f"RESUME=1 continues it, or choose another VERSION")
    return sweep


def as_word(value) -> str:
    """A value as -p takes it back (YAML): lists and numbers as written."""
    import yaml

    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def pairs(p_pairs) -> list[str]:
    return [w for name, value in p_pairs for w in ("-p", name, value)]


def unit_state(runs_dir: Path, unit: Unit) -> str:
    """'done' (every stage of its pipeline done), 'started' (a run folder exists) or 'new'."""
    run_dir = Path(runs_dir) / unit.version
    if not run_dir.exists():
        return "new"
    stages = runs.read_run_json(run_dir).get("stages", {})
    wanted = [s for s in STAGES if not (not unit.point and STAGES[s].makes_encoder)]
    return "done" if all(stages.get(s, {}).get("status") == "done" for s in wanted) else "started"


def resumed_words(runs_dir: Path, unit: Unit) -> list[str]:
    """A unit's words for `pipeline RESUME=1`: only what the stages still to run take (a pipeline that continues
    at evaluate refuses FT_EPOCHS, and a -p no remaining stage knows; the finished stages recorded theirs)."""
    stages = runs.read_run_json(Path(runs_dir) / unit.version).get("stages", {})
    wanted = [s for s in STAGES if unit.point or not STAGES[s].makes_encoder]
    left = wanted[next((i for i, s in enumerate(wanted) if stages.get(s, {}).get("status") != "done"), len(wanted)):]
    taken = {n for s in left for n in STAGES[s].names}
    if "pretrain" in left:
        from ..tasks import task_params

        taken |= set(task_params(next(w.split("=", 1)[1] for w in unit.words if w.startswith("TASK="))))
    dropped = ({"EPOCHS", "LR", "BS", "TASK"} if "pretrain" not in left else set()) | (
        {"FT_EPOCHS", "FT_LR", "FT_BS"} if "transfer" not in left else set())
    out, i = [], 0
    while i < len(unit.words):
        word = unit.words[i]
        if word == "-p":
            if unit.words[i + 1] in taken:
                out += unit.words[i:i + 3]
            i += 3
            continue
        if word.split("=", 1)[0] not in dropped:
            out.append(word)
        i += 1
    return out


def mark_sweep(runs_dir: Path, sweep: Sweep, unit: Unit, index: int) -> None:
    """run.json: the sweep, the point (as 'name=value ...'), and the replicate group with SEEDS > 1."""
    run_dir = Path(runs_dir) / unit.version
    if not run_dir.exists():
        return

    def change(info):
        info["sweep"] = {"name": sweep.name, "index": index, "of": len(sweep.units),
                         "point": " ".join(f"{k}={v}" for k, v in unit.point.items()) or "baseline",
                         "grid": {k: list(v) for k, v in sweep.grid.items()}}
        if unit.group:
            info["group"] = unit.group

    runs.update_run_json(run_dir, change)


def describe(sweep: Sweep, runs_dir: Path) -> list[str]:
    """DRY=1: one line per unit, its index (POINT), state and command."""
    lines = [f"sweep {sweep.name}: {len(sweep.units) - 1} runs over {len(points(sweep.grid))} points "
             f"({' x '.join(f'{k} {len(v)}' for k, v in sweep.grid.items())}) + 1 shared baseline"]
    for i, u in enumerate(sweep.units):
        lines.append(f"  POINT={i:<3} {u.version:<48} [{unit_state(runs_dir, u)}]  bin/stage.py pipeline {' '.join(u.words)}")
    return lines


def run_sweep(sweep: Sweep, runs_dir: Path, stage_cmd: list[str], jobs: int = 1, only: int | None = None,
              out=None) -> int:
    """Run the units (points first, the baseline last), `jobs` at once. A unit refused before compute (exit 2)
    stops the sweep; others go on when one fails. SIGINT / SIGTERM reach every running unit (each keeps its last
    complete epoch), no new unit starts, exit 130."""
    out = out or sys.stdout  # the stream at call time (a default argument would keep the one at import)
    chosen = list(enumerate(sweep.units)) if only is None else [(only, sweep.units[only])]
    stop = threading.Event()
    running: dict[int, subprocess.Popen] = {}
    codes: dict[int, int] = {}
    lock = threading.Lock()

    def run_one(index: int, unit: Unit) -> None:
        if stop.is_set():
            return
        state = unit_state(runs_dir, unit)
        if state == "done":
            print(f"sweep {sweep.name}: {unit.version} done already", file=out, flush=True)
            mark_sweep(runs_dir, sweep, unit, index)
            codes[index] = 0
            return
        words = [*resumed_words(runs_dir, unit), "RESUME=1"] if state == "started" else unit.words
        print(f"sweep {sweep.name}: POINT={index} {unit.version}{' (resumed)' if state == 'started' else ''}", file=out,
              flush=True)
        prefix = f"[{unit.label}{'' if not unit.point else f' seed {unit.seed}'}] " if jobs > 1 else ""
        with lock:
            # its own session: a Ctrl-C at the terminal reaches each unit once, forwarded below, not twice
            proc = subprocess.Popen([*stage_cmd, "pipeline", *words, "--runs-dir", str(runs_dir)], text=True,
                                    start_new_session=True,
                                    stdout=subprocess.PIPE if prefix else None, stderr=subprocess.STDOUT if prefix else None)
            running[index] = proc
        if prefix:
            for line in proc.stdout:
                out.write(prefix + line)
                out.flush()
        codes[index] = proc.wait()
        with lock:
            running.pop(index, None)
        mark_sweep(runs_dir, sweep, unit, index)
        if codes[index] == 2:  # refused before compute: every other unit would be refused alike
            stop.set()

    def forward(signum, _frame):
        stop.set()
        with lock:
            for proc in running.values():
                if proc.poll() is None:
                    proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for future in [pool.submit(run_one, i, u) for i, u in chosen]:
                future.result()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = [sweep.units[i].version for i, rc in sorted(codes.items()) if rc]
    skipped = [sweep.units[i].version for i, _ in chosen if i not in codes]
    if stop.is_set() and any(rc == 2 for rc in codes.values()):
        return 2
    if stop.is_set():
        print(f"error: sweep {sweep.name} interrupted; continue with `make sweep RESUME=1 VERSION={sweep.name}` "
              f"and the same SWEEP", file=sys.stderr)
        return 130
    if failed:
        print(f"error: sweep {sweep.name}: {len(failed)} of {len(chosen)} runs failed ({', '.join(failed)}); "
              f"RESUME=1 VERSION={sweep.name} retries them", file=sys.stderr)
        return 1
    done = len(chosen) - len(skipped)
    print(f"done: sweep {sweep.name}, {done} run{'s' if done != 1 else ''}; `make compare` groups it", file=out)
    return 0
