"""Stages share the machine's CPU cores: each takes cores // (stages running on this machine now), never
fewer than one, and looks again at every epoch.

Why: every process sizes its OpenMP team to all cores, and a team's threads spin while they wait for each
other. Two such teams on the same cores fight: on a 2-core machine two plain resnet18 training loops at 64 px
ran at 21 + 19 img/s where one alone ran at 198; with one thread each they ran at 99 + 101.

What a stage sizes to its share (`budget()`, `process_budget()`): torch's intra-op threads (and the inter-op
pool, which can be sized only before its first use), the augment's crop worker threads, the cache's decode
workers (for these a cuda stage takes the plain CPU share: it waits for the cache, its threads idle meanwhile).
The fit loop takes the share again at every epoch, and within an epoch as soon as the registry folder
changes (one stat per step): a stage that started alone must not keep all cores for the rest of a long
epoch while a second one starts beside it, since both would then run at a fraction of their speed.
A stage on a GPU (`cuda`) does little on the CPU and takes at most CUDA_THREADS threads.
THREADS=n (the `threads` parameter) overrides the rule; the value used is printed and recorded in run.json.

The registry of running stages is machine-wide and independent of any runs/ folder: one small file per
stage process, named by its pid, in a per-user temporary folder (IMGWANG_STAGE_REGISTRY overrides it).
A file whose process has ended, or whose pid now belongs to another process (start times differ), is
ignored and removed by whoever reads it next, so a killed stage never holds a share. A stage notebook run by
hand keeps its kernel's entry until the kernel ends (papermill ends it with the stage).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import atomic, clock
from .errors import ConfigError

CUDA_THREADS = 2  # a GPU stage's host work (batch gathering, kernel launches) needs no more
REGISTRY_ENV = "IMGWANG_STAGE_REGISTRY"


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS has no affinity masks
        return os.cpu_count() or 1


def share(n_cores: int, n_stages: int, device: str = "cpu") -> int:
    """The share rule: cores // stages running (this one included), at least 1; at most CUDA_THREADS on cuda."""
    threads = max(1, n_cores // max(1, n_stages))
    return min(CUDA_THREADS, threads) if device.startswith("cuda") else threads


def parse_threads(value) -> int | None:
    """THREADS as given: empty, 0 or "auto" = the share rule (None); else a positive whole number."""
    if value is None or str(value).strip().lower() in ("", "0", "auto"):
        return None
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"THREADS={value!r} is not a number (a positive whole number, or 0 for the share rule)") \
            from None
    if n != int(n) or n < 0:
        raise ConfigError(f"THREADS={value!r} must be a positive whole number (or 0 for the share rule)")
    return int(n)


# --- the registry ------------------------------------------------------------------------------------------

def registry_dir() -> Path:
    """One folder per user and machine: a user's stages share with each other, not with another user's."""
    folder = os.environ.get(REGISTRY_ENV)
    if folder:
        return Path(folder)
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"imgwang-stages-{uid}"


def _started(pid: int) -> float | None:
    """The process's start time (None if no such process): tells a live stage from a reused pid."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # alive, but not ours to inspect
        return -1.0


def register(device: str = "cpu", label: str = "", folder: Path | None = None) -> Path:
    """Enter this process in the registry (again: rewritten); removed at exit. Returns its file."""
    folder = Path(folder or registry_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    record = {"pid": os.getpid(), "started": _started(os.getpid()), "device": device, "label": label,
              "registered": clock.now()}
    atomic.write_json(path, record)  # readers never see half a record
    atexit.register(unregister, path)
    return path


def unregister(path: Path | None = None) -> None:
    path = Path(path) if path is not None else registry_dir() / f"{os.getpid()}.json"
    path.unlink(missing_ok=True)


def running(folder: Path | None = None) -> list[dict]:
    """Records of the stages running now; records of ended processes (or reused pids) are removed."""
    folder = Path(folder or registry_dir())
    if not folder.is_dir():
        return []
    alive = []
    for path in folder.glob("*.json"):
        try:
            record = json.loads(path.read_text())
            pid, started = int(record["pid"]), record.get("started")
        except FileNotFoundError:  # unregistered while we looked
            continue
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # not a record we wrote (written atomically): not a stage
            continue
        now = _started(pid)
        if now is None or (started is not None and now >= 0 and abs(now - started) > 1.0):
            path.unlink(missing_ok=True)
            continue
        alive.append(record)
    return alive


# --- what this process uses ----------------------------------------------------------------------------------

@dataclass
class Choice:
    threads: int
    source: str  # "THREADS" (the override) or "share"
    cores: int
    stages_running: int
    device: str

    @property
    def processes(self) -> int:
        """Worker processes for work done before training (decoding the cache): the CPU share, without the
        cuda cap, since a GPU stage waits for that work and its own threads are idle meanwhile."""
        return self.threads if self.source == "THREADS" else share(self.cores, self.stages_running, "cpu")

    def describe(self) -> str:
        if self.source == "THREADS":
            return f"{self.threads} CPU threads (THREADS={self.threads}; {self.cores} cores)"
        why = f"{self.cores} cores / {self.stages_running} stage{'s' if self.stages_running != 1 else ''} running"
        if self.device.startswith("cuda"):
            why += f", at most {CUDA_THREADS} for a cuda stage"
        return f"{self.threads} CPU threads ({why})"


def choose(override=None, device: str = "cpu", n_cores: int | None = None, n_stages: int | None = None) -> Choice:
    """The thread count for this process: the override, else its share (counting the registry now)."""
    n_cores = n_cores or cores()
    n_stages = n_stages if n_stages is not None else max(1, len(running()))
    forced = parse_threads(override)
    if forced is not None:
        return Choice(forced, "THREADS", n_cores, n_stages, device)
    return Choice(share(n_cores, n_stages, device), "share", n_cores, n_stages, device)


_budget: int | None = None  # what apply() set; None: no stage in this process, every pool sized to the cores
_processes: int | None = None


def budget() -> int:
    """CPU threads this process may keep busy: what the stage's share set, else all cores (library use)."""
    return _budget or cores()


def process_budget() -> int:
    """Worker processes for the cache's decoding: the stage's CPU share (see Choice.processes), else all cores."""
    return _processes or cores()


def apply(threads: int, processes: int | None = None) -> None:
    """Size torch's thread pools (and, via budget(), the augment's threads) to `threads`; `processes` sizes
    the decode pool (default: `threads`)."""
    global _budget, _processes
    import torch

    _budget = max(1, int(threads))
    _processes = max(1, int(processes or threads))
    torch.set_num_threads(_budget)
    try:  # possible only before the inter-op pool's first use; eager training hardly uses it
        torch.set_num_interop_threads(_budget)
    except RuntimeError:
        pass


class StageThreads:
    """A stage's thread share: registered for the stage's life, applied at start and at each `refresh()`.
    With `keep`, every value (and change) is handed to it, e.g. to record it in run.json."""

    def __init__(self, override=None, device: str = "cpu", keep=None, stage: str = "",
                 folder: Path | None = None, say=print):
        self.override, self.device, self.keep, self.stage = override, device, keep, stage
        self.folder, self.say = folder, say
        self.choice: Choice | None = None
        self.changes: list[dict] = []
        self.path: Path | None = None
        self.seen: int | None = None  # the registry folder's mtime at the last look

    def start(self) -> Choice:
        parse_threads(self.override)  # a bad value fails before the registry is touched
        self.path = register(self.device, self.stage, self.folder)
        self.choice = self._choose()
        apply(self.choice.threads, self.choice.processes)
        self.say(f"threads: {self.choice.describe()}")
        self._record()
        return self.choice

    def refresh(self, epoch: int | None = None) -> Choice:
        """Look at the registry again; resize when the share changed (another stage started or ended)."""
        choice = self._choose()
        if self.choice is None or choice.threads != self.choice.threads:
            apply(choice.threads, choice.processes)
            at = f" at epoch {epoch}" if epoch is not None else ""
            self.say(f"threads{at}: {choice.describe()}")
            self.changes.append({"epoch": epoch, "threads": choice.threads, "stages_running": choice.stages_running})
            self.choice = choice
            self._record()
        return choice

    def changed(self) -> bool:
        """Whether a stage was entered in or removed from the registry since the last look (one stat)."""
        try:
            return os.stat(self.folder or registry_dir()).st_mtime_ns != self.seen
        except OSError:
            return True

    def stop(self) -> None:
        if self.path is not None:
            unregister(self.path)
            self.path = None

    def record(self) -> dict:
        out = asdict(self.choice)
        if self.changes:
            out["changes"] = list(self.changes)
        return out

    def _choose(self) -> Choice:
        try:  # before listing: a change during the listing shows as a later mtime, so it is looked at again
            self.seen = os.stat(self.folder or registry_dir()).st_mtime_ns
        except OSError:
            self.seen = None
        n_stages = max(1, len(running(self.folder)))
        return choose(self.override, self.device, n_stages=n_stages)

    def _record(self) -> None:
        if self.keep is not None:
            self.keep(self.record())


_stage: StageThreads | None = None


def start_stage(override=None, device: str = "cpu", keep=None, stage: str = "",
                folder: Path | None = None, say=print) -> StageThreads:
    """Called once where a stage starts in its kernel: register, take the share, print and record it."""
    global _stage
    if _stage is not None:
        _stage.stop()
    _stage = StageThreads(override, device, keep, stage, folder, say)
    _stage.start()
    return _stage


@contextlib.contextmanager
def step_aside():
    """Leave the registry while this process only waits for processes that do the work (a kernel waiting
    for its torchrun ranks, which register themselves), then enter it again."""
    if _stage is None or _stage.path is None:
        yield
        return
    unregister(_stage.path)
    try:
        yield
    finally:
        _stage.path = register(_stage.device, _stage.stage, _stage.folder)


def refresh_share(epoch: int | None = None, only_if_changed: bool = False) -> None:
    """The fit loop's hook: at each epoch, and at each step with only_if_changed (a stat of the registry
    folder), re-take the share when this process runs a stage; without a stage, nothing."""
    if _stage is not None and (not only_if_changed or _stage.changed()):
        _stage.refresh(epoch)
