"""Run folders: versions, run.json, the no-overwrite rule. (Reading scraps back across runs: stages/compare.py.)

`runs/<version>/` holds the executed notebooks of one experiment, `run.json` (resolved parameters,
environment, status per stage) and its artefacts. Nothing in a run folder is ever deleted: FORCE=1
moves the files a stage would write into `replaced-<timestamp>/` first.

Concurrency: a new version is claimed with os.mkdir (claim_version), a stage runs under the version's
stage lock, and every run.json update is a read-modify-write under the run.json lock (imgwang.runs.locks).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..core import atomic, clock
from . import locks
from ..core.errors import ConfigError, ImgwangError
from ..core.secrets import scrub_secrets, scrub_text
from ..spec import STAGES as SPEC

# stage -> its template notebook (the executed copy keeps the same name)
STAGES = {name: stage.notebook for name, stage in SPEC.items()}
COMPARE_NOTEBOOK = "05-compare.ipynb"
VERSION_RE = re.compile(r"^v(\d+)$")


def versions(runs_dir: Path) -> list[str]:
    """Existing versions, oldest first: v<n> by number, then any other names alphabetically."""
    if not runs_dir.is_dir():
        return []
    names = [p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    numbered = sorted((int(m.group(1)), n) for n in names if (m := VERSION_RE.match(n)))
    return [n for _, n in numbered] + sorted(n for n in names if not VERSION_RE.match(n))


def next_version(runs_dir: Path) -> str:
    nums = [int(m.group(1)) for n in versions(runs_dir) if (m := VERSION_RE.match(n))]
    return f"v{max(nums, default=0) + 1}"


def newest_version(runs_dir: Path) -> str:
    """The most recently created run: by run.json's `created` time, then by version number. Not by
    modification time: a later stage, RESUME or FORCE in an old version does not make it the newest."""
    names = versions(runs_dir)
    if not names:
        raise ConfigError(f"no runs in {runs_dir}/ yet: run `make pretrain` first or give VERSION=")
    return max(names, key=lambda v: (created_at(runs_dir / v), names.index(v)))


def created_at(run_dir: Path) -> float:
    """run.json's `created` as seconds since the epoch (0 when unknown)."""
    try:
        created = read_run_json(run_dir).get("created")
        return clock.parse(created) if created else 0.0
    except (ImgwangError, ValueError, TypeError):
        return 0.0


def claim_version(runs_dir: Path, wanted: str | None = None) -> str:
    """Create runs/<wanted> (default: the next free v<n>) and return its name; when another command created it
    first, the next free v<n> instead. os.mkdir either creates a folder or fails, so two processes never
    claim the same version: the loser moves on."""
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    name = wanted or next_version(runs_dir)
    while True:
        try:
            os.mkdir(Path(runs_dir) / name)
            return name
        except FileExistsError:
            name = next_version(runs_dir)


def check_version_name(version: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", version or ""):
        raise ConfigError(f"VERSION={version!r} is not a valid folder name (letters, digits, . _ -)")
    return version


def check_version_path(runs_dir: Path, version: str) -> None:
    """The version's folder is a folder (or not there yet), not a file or a link to elsewhere."""
    path = Path(runs_dir) / version
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ConfigError(f"VERSION={version}: {path} exists and is not a run folder; choose another VERSION")


def read_run_json(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ImgwangError(f"{path} is not valid JSON ({e}); it was not written by imgwang") from e


def stage_record(run_dir: Path, stage: str) -> dict:
    """run.json's record of one stage (status, times, `config`: its resolved parameters); {} when none."""
    return read_run_json(run_dir).get("stages", {}).get(stage, {}) or {}


def recorded_config(run_dir: Path, stage: str) -> dict:
    """The resolved parameters a stage of this version ran with ({} when it has not run)."""
    return stage_record(run_dir, stage).get("config") or {}


def write_run_json(run_dir: Path, info: dict) -> None:
    atomic.write_json(run_dir / "run.json", scrub_secrets(info, redact=True), indent=2, sort_keys=True, default=str)


def update_run_json(run_dir: Path, change) -> dict:
    """Read run.json, let `change(info)` edit it in place, write it back, all under the run.json lock so
    that two processes updating it at once both keep their change."""
    with locks.run_json_lock(run_dir):
        info = read_run_json(run_dir)
        info.setdefault("version", run_dir.name)
        change(info)
        write_run_json(run_dir, info)
    return info


def update_stage(run_dir: Path, stage: str, **fields) -> dict:
    """Merge fields into run.json's record of one stage (status, times, parameters)."""
    return update_run_json(run_dir, lambda info: info.setdefault("stages", {}).setdefault(stage, {}).update(fields))


def error_text(text: str, limit: int = 500) -> str:
    """An error message for run.json: secrets scrubbed from the whole text first, then cut to `limit`."""
    return scrub_text(text)[:limit]


PROCESS_GONE = "interrupted (process gone)"


def reconcile(run_dir: Path, lock_held: bool = False) -> list[str]:
    """Stages that run.json says are `running` while nobody holds the version's lock died without a word
    (SIGKILL, OOM killer, a closed terminal): mark them `interrupted (process gone)`. Returns their names.
    `lock_held`: the caller holds the lock itself (so whatever says `running` is not running)."""
    stages = read_run_json(run_dir).get("stages", {}) if (run_dir / "run.json").exists() else {}
    if not any(s.get("status") == "running" for s in stages.values()):
        return []
    if not lock_held and locks.holder(run_dir) is not None:
        return []
    gone = []

    def mark(info):
        for name, record in info.get("stages", {}).items():
            if record.get("status") == "running":
                record.update(status=PROCESS_GONE, ended=None)
                gone.append(name)

    update_run_json(run_dir, mark)
    return gone


def is_unfinished(status: str | None) -> bool:
    """A stage RESUME can continue: stopped by a signal, a dead kernel or a dead process, or failed."""
    return bool(status) and (status.startswith("interrupted") or status == "failed")


def environment_info(repo: Path) -> dict:
    """Git commit, dirty flag, package versions and hardware, for run.json."""
    import importlib.metadata as md

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    packages = {}
    for name in ("torch", "torchvision", "timm", "kornia", "lightly", "papermill", "scrapbook", "comet_ml", "numpy"):
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            packages[name] = None
    hardware = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        import torch

        if torch.cuda.is_available():
            hardware["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # hardware info is best effort, never a reason to fail a run
        pass
    return {
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "packages": packages,
        "hardware": hardware,
    }


def move_aside(run_dir: Path, names: list[str], dest: Path | None = None) -> Path | None:
    """FORCE=1: move the given files of a run into replaced-<time>/ (never delete). Returns that folder."""
    present = [run_dir / n for n in names if (run_dir / n).exists()]
    if not present:
        return None
    if dest is None:
        dest = run_dir / f"replaced-{clock.folder_stamp()}"
        n = 1
        while dest.exists():
            n += 1
            dest = run_dir / f"replaced-{clock.folder_stamp()}-{n}"
    dest.mkdir(exist_ok=True)
    for p in present:
        shutil.move(str(p), dest / p.name)
    return dest


STALE = "stale"


def mark_stale(run_dir: Path, stages: list[str], because: str) -> list[str]:
    """Later stages built on what FORCE replaces: their run.json record becomes `stale` (the old record kept
    under `replaced`), so compare never counts them as done. Returns the stages marked."""
    marked = []

    def mark(info):
        for name in stages:
            record = info.get("stages", {}).get(name)
            if record and record.get("status") not in (None, STALE):
                info["stages"][name] = {"status": STALE, "because": because, "replaced": record}
                marked.append(name)

    update_run_json(run_dir, mark)
    return marked


def encoder_path(runs_dir: Path, version: str) -> Path:
    """The pretrained encoder of a version; a clear error when there is none."""
    run_dir = runs_dir / version
    if not run_dir.is_dir():
        raise ConfigError(f"FROM={version}: no such run ({run_dir}/ does not exist); known: {', '.join(versions(runs_dir)) or 'none'}")
    path = run_dir / "encoder.pt"
    if not path.exists():
        raise ConfigError(f"FROM={version}: {path} does not exist (did its pretrain stage finish?)")
    return path
