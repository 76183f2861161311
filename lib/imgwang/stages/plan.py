"""A stage's plan: its configuration (resolved once, stages/resolve.py), checked against the machine and the run
folders before compute starts, and the first writes into its run folder.

What a stage takes, inherits, needs and writes is declared in spec/__init__.py. Later stages inherit what they
must agree on from the version's earlier stages (run.json): transfer takes the architecture of the encoder it
loads, evaluate and review take the transfer's data, size and architecture. A value given on the command
line always wins; a contradiction is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import runs
from ..core.clock import now
from ..core.errors import ConfigError
from ..runs import claim
from ..spec import STAGES, Stage, stage_spec
from . import preflight as input_checks
from . import resolve as resolving
from . import resume as resuming


@dataclass
class StagePlan:
    stage: str
    version: str
    runs_dir: Path
    template: Path
    parameters: dict
    force: bool = False
    resume: bool = False
    environment: dict = field(default_factory=dict)

    @property
    def spec(self) -> Stage:
        return STAGES[self.stage]

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.version

    @property
    def notebook_out(self) -> Path:
        return self.run_dir / self.spec.notebook

    def prepare_run_dir(self) -> None:
        """Create the folder, move old files aside when forced, record the stage as running."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.force:  # with what the later stages of this version built from the old files
            later = resuming.dependents(self.run_dir, self.stage)
            files = [f for s in (self.stage, *later) for f in written_files(self.run_dir, STAGES[s])]
            moved = runs.move_aside(self.run_dir, files)
            if moved:
                print(f"FORCE=1: earlier {self.stage} files moved to {moved}")
            stale = runs.mark_stale(self.run_dir, later, f"{self.stage} ran again (FORCE=1) on {now()}")
            if stale:
                print(f"FORCE=1: {', '.join(stale)} of {self.version} were built on the old {self.stage}: "
                      f"marked stale, their files moved aside too; run them again")
        elif self.resume and self.notebook_out.exists():
            moved = runs.move_aside(self.run_dir, [self.notebook_out.name])
            print(f"RESUME=1: the interrupted notebook was moved to {moved}")

        def created(info):
            if "environment" not in info:
                info.update(version=self.version, created=now(), environment=self.environment)

        runs.update_run_json(self.run_dir, created)
        runs.update_stage(self.run_dir, self.stage, status="running", started=now(), ended=None, error=None,
                          resumed=self.resume, config=self.parameters)


def written_files(run_dir: Path, spec: Stage) -> list[str]:
    """The files of a stage present in its run folder (its `writes` patterns expanded), notebook first."""
    names = [spec.notebook]
    for pattern in spec.writes:
        names += [str(p.relative_to(run_dir)) for p in sorted(run_dir.glob(pattern))] if "*" in pattern else [pattern]
    return names


def plan_stage(stage: str, args, repo: Path, in_pipeline: bool = False) -> StagePlan:
    """What bin/stage.py was given, resolved and checked (stages/resolve.py), then checked against the machine
    and the run folders: the data, memory and disk, the files the stage needs, FROM's encoder, no overwrite."""
    spec = stage_spec(stage)
    runs_dir = Path(args.runs_dir)
    version = runs.check_version_name(args.version) if args.version else (
        runs.next_version(runs_dir) if spec.starts_version or in_pipeline else runs.newest_version(runs_dir))
    runs.check_version_path(runs_dir, version)
    run_dir = runs_dir / version
    new_version = not args.version and (spec.starts_version or in_pipeline)  # claimed after the checks
    if not new_version:
        claim.check_not_busy(run_dir)
    force, resume = truthy(args.force), truthy(args.resume)
    if force and resume:
        raise ConfigError("FORCE=1 and RESUME=1 contradict each other: FORCE starts over, RESUME continues")
    recorded = resuming.recorded_settings(run_dir, stage) if resume else {}
    make_values = {p.name: getattr(args, p.name, "") for p in spec.params}
    given = resolving.given_values(spec, make_values, args.p, recorded, in_pipeline)
    if "resume" in spec.names:
        given["resume"] = resume
    params, task = resolving.resolve_with_task(stage, given, runs_dir=runs_dir, version=version, in_pipeline=in_pipeline)
    if resume:
        resuming.check_same_settings(stage, version, recorded, params)
    input_checks.check_encoder(params["arch"], params["size"], task)  # takes SIZE (and the task's views), pools
    root = check_data(params["data"], spec)
    check_resources(params, root, task)
    for needed, maker in spec.needs if not in_pipeline else []:  # a pipeline writes them on the way
        if not (run_dir / needed).exists():
            raise ConfigError(f"{run_dir}/{needed} does not exist: run `make {maker} VERSION={version}` first")
    if params.get("from_version", "none") != "none" and not (in_pipeline and params["from_version"] == version):
        encoder = runs.encoder_path(runs_dir, params["from_version"])
        input_checks.check_encoder_arch(encoder, params["arch"], params["from_version"])
    if not new_version:
        check_overwrite(run_dir, spec, force, resume)
    template = repo / "notebooks" / spec.notebook
    return StagePlan(stage, version, runs_dir, template, params, force, resume, runs.environment_info(repo))


def truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def check_resources(params: dict, root: Path, task) -> None:
    """The image cache fits on the disk and a batch in memory; then the task can make a batch of this size."""
    from ..data.cache import storage_size
    from ..data.layout import load_layout
    from .stage_data import default_cache_dir

    n_images = sum(load_layout(root).counts().values())
    input_checks.check_fits(n_images, params["size"], storage_size(params["size"]), params["bs"],
                            default_cache_dir())
    if task is not None:
        input_checks.check_task_batch(task, params["bs"], params["size"])


def check_data(data: str, spec: Stage) -> Path:
    """The data exists (fetched or generated if need be) and, for a stage that needs labels, has classes.
    Returns its root."""
    from ..data.layout import is_plain_folder
    from ..data.resolve import KNOWN, resolve_data

    root = resolve_data(data)  # lists and checks the layout once
    if data not in KNOWN:
        input_checks.check_utf8_names(root)
    if spec.labelled and is_plain_folder(root):
        raise ConfigError(
            f"DATA={data} is a folder of images without classes: it can be pretrained on, not used by {spec.name}. "
            f"Fine-tune its encoder on labelled data with `make transfer VERSION=<new> FROM=<this version> "
            f"DATA=<folder in Imagewang layout>`")
    return root


def check_overwrite(run_dir: Path, spec: Stage, force: bool, resume: bool) -> None:
    notebook = run_dir / spec.notebook
    if notebook.exists() and not (force or resume):
        raise ConfigError(
            f"{notebook} already exists: use a new VERSION, FORCE=1 to run {spec.name} again (old files are moved "
            f"aside, never deleted) or RESUME=1 to continue an interrupted run")
