"""Where a stage runs and whether the machine and the files allow it: checks only, no value decided here.

`place` names the stage's version (given, the next free one, or the newest), reads FORCE and RESUME, and, for
a RESUME, the settings run.json recorded; `check_machine_and_files` takes the configuration the resolver (stages/resolve.py)
made and checks it against the machine and the run folders: a RESUME's settings unchanged, the encoder, the files
the stage needs, FROM's encoder, no overwrite, then the data (fetched if need be), memory and disk. The driver (stages/driver.py)
calls place, resolve and check_machine_and_files in that order, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import runs
from ..core.errors import ConfigError
from ..runs import claim
from ..spec import Stage, stage_spec
from . import preflight as input_checks
from . import resume as resuming


@dataclass(frozen=True)
class Place:
    """A stage's run folder and how it is to be used there."""

    version: str
    runs_dir: Path
    new_version: bool  # the next free version, claimed once everything is checked
    force: bool
    resume: bool
    recorded: dict  # RESUME=1: the settings the stage started with (run.json); else {}

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.version


def place(stage: str, args, in_pipeline: bool = False) -> Place:
    """The version `args` names (or the next free one for a stage that starts a version, else the newest),
    checked free of another command, and FORCE / RESUME with the settings a RESUME continues."""
    spec = stage_spec(stage)
    runs_dir = Path(args.runs_dir)
    version = runs.check_version_name(args.version) if args.version else (
        runs.next_version(runs_dir) if spec.starts_version or in_pipeline else runs.newest_version(runs_dir))
    runs.check_version_path(runs_dir, version)
    new_version = not args.version and (spec.starts_version or in_pipeline)
    if not new_version:
        claim.check_not_busy(runs_dir / version)
    force, resume = truthy(args.force), truthy(args.resume)
    if force and resume:
        raise ConfigError("FORCE=1 and RESUME=1 contradict each other: FORCE starts over, RESUME continues")
    recorded = resuming.recorded_settings(runs_dir / version, stage) if resume else {}
    return Place(version, runs_dir, new_version, force, resume, recorded)


def check_machine_and_files(stage: str, where: Place, params: dict, task, in_pipeline: bool = False,
                            fetch: bool = True) -> None:
    """The resolved configuration against the machine and the run folders (stages/preflight.py). With
    fetch=False (a dry run) a named dataset that is not here yet is not downloaded: the checks that need its
    images wait for the run."""
    spec = stage_spec(stage)
    if where.resume:
        resuming.check_same_settings(stage, where.version, where.recorded, params)
    input_checks.check_encoder(params["arch"], params["size"], task)  # takes SIZE (and the task's views), pools
    # The run folders before the data: a mistyped VERSION or FROM must not start a download first.
    for needed, maker in spec.needs if not in_pipeline else []:  # a pipeline writes them on the way
        if not (where.run_dir / needed).exists():
            raise ConfigError(f"{where.run_dir}/{needed} does not exist: run `make {maker} VERSION={where.version}` first")
    if params.get("from_version", "none") != "none" and not (in_pipeline and params["from_version"] == where.version):
        encoder = runs.encoder_path(where.runs_dir, params["from_version"])
        input_checks.check_encoder_arch(encoder, params["arch"], params["from_version"])
    if not where.new_version:
        check_overwrite(where.run_dir, spec, where.force, where.resume)
    if fetch or not awaits_download(params["data"]):
        check_resources(params, check_data(params["data"], spec), task)
    elif task is not None:
        input_checks.check_task_batch(task, params["bs"], params["size"])


def truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def written_files(run_dir: Path, spec: Stage) -> list[str]:
    """The files of a stage present in its run folder (its `writes` patterns expanded), notebook first."""
    names = [spec.notebook]
    for pattern in spec.writes:
        names += [str(p.relative_to(run_dir)) for p in sorted(run_dir.glob(pattern))] if "*" in pattern else [pattern]
    return names


def check_resources(params: dict, layout, task) -> None:
    """The image cache fits on the disk and a batch in memory; then the task can make a batch of this size, and
    the data holds one such batch for pretraining and one for its metric; with SPLIT=dev, the dev fifth is not empty."""
    from ..data.cache import storage_size
    from .stage_data import default_cache_dir

    n_images = sum(layout.counts().values())
    input_checks.check_fits(n_images, params["size"], storage_size(params["size"]), params["bs"],
                            default_cache_dir())
    if params.get("split") == "dev":
        input_checks.check_dev_split(layout)
    if task is not None:
        input_checks.check_task_batch(task, params["bs"], params["size"])
        input_checks.check_enough_images(task, layout, params.get("pretrain_on_val", False))


def awaits_download(data: str) -> bool:
    """DATA names a download (imagewang, ...) that is not in the data folder yet."""
    from ..data.download import DATASETS, is_here
    from ..data.resolve import default_data_root

    return data in DATASETS and not is_here(data, default_data_root())


def check_data(data: str, spec: Stage):
    """The data exists (fetched or generated if need be) and, for a stage that needs labels, has two classes or
    more. Returns its layout (imgwang.data.layout), listed once for every check."""
    from ..data.layout import is_plain_folder, load_layout
    from ..data.resolve import KNOWN, resolve_data

    root = resolve_data(data)  # lists and checks the layout once
    if data not in KNOWN:
        input_checks.check_utf8_names(root)
    if spec.labelled and is_plain_folder(root):
        raise ConfigError(
            f"DATA={data} is a folder of images without classes: it can be pretrained on, not used by {spec.name}. "
            f"Fine-tune its encoder on labelled data with `make transfer VERSION=<new> FROM=<this version> "
            f"DATA=<folder in Imagewang layout>`")
    layout = load_layout(root)
    if spec.labelled and len(layout.classes) < 2:
        raise ConfigError(
            f"DATA={data} has one class in train/ ({layout.classes[0]}): {spec.name} needs two or more to tell "
            f"apart; the images can still be pretrained on (make pretrain)")
    return layout


def check_overwrite(run_dir: Path, spec: Stage, force: bool, resume: bool) -> None:
    notebook = run_dir / spec.notebook
    if notebook.exists() and not (force or resume):
        raise ConfigError(
            f"{notebook} already exists: use a new VERSION, FORCE=1 to run {spec.name} again (old files are moved "
            f"aside, never deleted) or RESUME=1 to continue an interrupted run")
