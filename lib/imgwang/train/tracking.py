"""Experiment tracking: Comet online, Comet offline (a zip in log_dir, no network), or nothing.

Tracking must never end a training run: if comet_ml is missing or fails, we warn once and carry on
with a no-op tracker. The API key never leaves the environment: parameters whose name or value looks
like a secret are dropped before logging, and Comet's code/git/env/stdout capture is switched off
(those are where a key would leak from). Comet's own console messages pass a filter that holds back any
that name a secret or a refused key (a server answering 401 can echo the key, and comet logs its answer at
ERROR level with a traceback): make_tracker reports such a failure in one scrubbed line of its own.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
import warnings
from pathlib import Path

from ..core.errors import ConfigError
from ..core.secrets import scrub_secrets, scrub_text, secret_values

MODES = ("off", "offline", "online", "auto")


class Tracker:
    """The no-op tracker; also the interface every tracker follows."""

    mode = "off"

    def log_params(self, params: dict) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int | None = None, epoch: int | None = None) -> None:
        pass

    def log_figure(self, name: str, fig) -> None:
        pass

    def end(self) -> None:
        pass


class CometTracker(Tracker):
    """Wraps a comet_ml experiment; any comet failure disables it with a single warning."""

    def __init__(self, experiment, mode: str):
        self.experiment, self.mode = experiment, mode

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        if self.experiment is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:
            warnings.warn(f"experiment tracking stopped ({what} failed: {type(e).__name__}: {e}); training goes on")
            self.experiment = None

    def log_params(self, params: dict) -> None:
        if self.experiment is not None:
            self._call("log_params", self.experiment.log_parameters, scrub_secrets(params))

    def log_metrics(self, metrics: dict, step: int | None = None, epoch: int | None = None) -> None:
        if self.experiment is not None:
            self._call("log_metrics", self.experiment.log_metrics, metrics, step=step, epoch=epoch)

    def log_figure(self, name: str, fig) -> None:
        if self.experiment is not None:
            self._call("log_figure", self.experiment.log_figure, figure_name=name, figure=fig)

    def end(self) -> None:
        if self.experiment is None:
            return
        where = _where(self.experiment, self.mode)
        self._call("end", self.experiment.end)
        if self.experiment is not None and where:
            print(f"comet {self.mode}: {where}")
        self.experiment = None


def _where(experiment, mode: str) -> str:
    """Where the finished experiment can be found: its archive (offline) or page (online)."""
    try:
        if mode == "offline":
            archive = Path(experiment.offline_directory) / f"{experiment.id}.zip"
            return f"archive {archive} (upload it later with `comet upload {archive}`)"
        return f"{experiment.url}"
    except Exception:  # noqa: BLE001 - only a message; comet's own attributes may differ between versions
        return ""


class QuietComet(logging.Filter):
    """On comet's console handlers: records that mention a secret, a refused key or a failed start are kept
    back (their first line, scrubbed, stays in `held` for our own message); the rest pass unchanged."""

    REFUSED = re.compile(r"status code 401|\b401\b|invalid api ?key|api ?key is invalid|failed to create experiment",
                         re.IGNORECASE)

    def __init__(self):
        super().__init__("imgwang-quiet-comet")
        self.held: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: judge its raw text
            text = str(record.msg)
        full = text + ("".join(traceback.format_exception(*record.exc_info)) if record.exc_info else "")
        if self.REFUSED.search(full) or any(s in full for s in secret_values()):
            self.held.append(scrub_text(text.strip().splitlines()[0] if text.strip() else record.levelname))
            return False
        return True


def quiet_comet_logging() -> QuietComet:
    """Install (once) the filter on every handler of comet's logger; returns it."""
    logger = logging.getLogger("comet_ml")
    for handler in logger.handlers:
        for f in handler.filters:
            if isinstance(f, QuietComet):
                return f
    quiet = QuietComet()
    for handler in logger.handlers:
        handler.addFilter(quiet)
    return quiet


def resolve_mode(mode: str) -> str:
    mode = (mode or "off").lower()
    if mode not in MODES:
        raise ConfigError(f"unknown COMET={mode!r}; use one of: {', '.join(MODES)}")
    if mode == "auto":
        return "online" if os.environ.get("COMET_API_KEY") else "offline"
    if mode == "online" and not os.environ.get("COMET_API_KEY"):
        raise ConfigError("COMET=online needs COMET_API_KEY in the environment (or use COMET=offline / COMET=off)")
    return mode


def make_tracker(mode: str = "off", project: str = "imgwang", run_name: str | None = None,
                 log_dir: Path | None = None) -> Tracker:
    """A tracker for `mode`; bad modes and online-without-key raise ConfigError here, before training."""
    mode = resolve_mode(mode)
    if mode == "off":
        return Tracker()
    if mode == "offline" and log_dir is None:
        raise ConfigError("COMET=offline needs a log_dir to write the experiment archive into")
    # comet's console chatter (import-order and Jupyter hints that do not apply here, archiving progress)
    # buries the notebook's output: errors only, unless the user set a level; end() says where results went.
    os.environ.setdefault("COMET_LOGGING_CONSOLE", "ERROR")
    try:
        import comet_ml
    except Exception as e:
        warnings.warn(f"comet_ml is not usable ({type(e).__name__}: {e}); experiment tracking is off")
        return Tracker()
    quiet = quiet_comet_logging()
    if mode == "online":
        quiet.held.clear()
        try:
            experiment = _start(comet_ml, project, run_name, online=True, log_dir=log_dir)
            if getattr(experiment, "alive", True):
                return CometTracker(experiment, "online")
            _end_quietly(experiment)
            reason = quiet.held[0] if quiet.held else "the server did not accept the experiment"
        except Exception as e:
            reason = scrub_text(f"{type(e).__name__}: {e}".splitlines()[0])
        if quiet.held and any(QuietComet.REFUSED.search(h) for h in quiet.held):
            reason = "the server refused COMET_API_KEY (HTTP 401): check the key"
        warnings.warn(f"Comet online failed to start ({reason[:200]}); falling back to offline")
        if log_dir is None:
            return Tracker()
    try:
        return CometTracker(_start(comet_ml, project, run_name, online=False, log_dir=log_dir), "offline")
    except Exception as e:
        warnings.warn(f"Comet offline failed to start ({type(e).__name__}: {e}); experiment tracking is off")
        return Tracker()


def _end_quietly(experiment) -> None:
    try:
        experiment.end()
    except Exception:  # noqa: BLE001 - a dead experiment has nothing to save
        pass


def _start(comet_ml, project: str, run_name: str | None, *, online: bool, log_dir: Path | None):
    offline_dir = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        offline_dir = str(log_dir)
    config = comet_ml.ExperimentConfig(
        name=run_name, offline_directory=None if online else offline_dir, display_summary_level=0,
        # everything that could copy a secret (source, diffs, env, argv, stdout) stays off
        log_code=False, log_graph=False, parse_args=False, log_git_metadata=False, log_git_patch=False,
        log_env_details=False, log_env_gpu=False, log_env_host=False, log_env_cpu=False,
        log_env_network=False, log_env_disk=False, auto_output_logging=None, auto_param_logging=False,
        auto_metric_logging=False, auto_log_co2=False,
    )
    return comet_ml.start(project_name=project, online=online, mode="create", experiment_config=config)
