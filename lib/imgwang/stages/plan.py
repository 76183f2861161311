"""Everything a stage checks before compute starts, and the resolved parameters its notebook gets.

What a stage takes, inherits, needs and writes is declared in stages/spec.py; this module applies it. Later
stages inherit what they must agree on from the version's earlier stages (run.json): transfer takes the
architecture of the encoder it loads, evaluate and review take the transfer's data, size and architecture.
A value given on the command line always wins; a contradiction is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import config, input_checks, runs
from ..clock import now
from ..device import resolve_device
from ..errors import ConfigError
from . import claim
from . import resume as resuming
from .spec import PIPELINE, STAGES, Stage, stage_spec  # noqa: F401  (PIPELINE: bin/stage.py's import)


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


def parse_value(text: str):
    """`-p name value`: numbers, booleans, lists and dicts as YAML; anything else stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def plan_stage(stage: str, args, repo: Path, in_pipeline: bool = False) -> StagePlan:
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

    # Make variables (and their --options) set the parameters that declare them; empty means "not given"
    given = {p.name: getattr(args, p.name) for p in spec.params
             if p.make and not p.internal and getattr(args, p.name, "") != ""}
    task_params = {}
    takes_task_params = spec.param("task_params") is not None
    task = given.get("task", recorded.get("task", spec.defaults().get("task")))
    own_task_params = task_param_names(task) if takes_task_params else set()
    by_p = {}
    for name, text in args.p:
        p = spec.param(name)
        if p is not None and not p.internal:
            by_p[name] = parse_value(text)
        elif takes_task_params and (not in_pipeline or name in own_task_params):
            task_params[name] = parse_value(text)
        elif not in_pipeline:
            raise ConfigError(f"unknown parameter {name!r} for {stage}; it takes: {', '.join(sorted(spec.names))}")

    input_checks.check_explicit_zeros(by_p)
    given.update(input_checks.coerce_types(by_p, spec.defaults()))
    if own_task_params:
        from ..tasks import task_params as task_defaults

        task_params = input_checks.coerce_types(task_params, task_defaults(task), what="task parameter ")
    if resume:  # the recorded settings, then what was given (which must agree: checked once resolved)
        given = {**{k: v for k, v in recorded.items() if k != "task_params"}, **given}
        task_params = {**(recorded.get("task_params") or {}), **task_params}

    params = resolve_parameters(stage, given, runs_dir, version, in_pipeline=in_pipeline)
    if "resume" in params:
        params["resume"] = resume
    if takes_task_params:
        params["task_params"] = {**(params.get("task_params") or {}), **task_params}
    input_checks.check_finite(params)
    if resume:
        resuming.check_same_settings(stage, version, recorded, params)

    check_arch(params["arch"])
    task = None
    if "task" in params:
        from ..data import loader_augment
        from ..tasks import get_task

        task = get_task(params["task"], **params["task_params"])
        # a loader augmentation that would change the labels, or one a view-making task would not use (a pipeline
        # passes it on to fine-tuning)
        used = loader_augment.check(params, task=params["task"], strict=not in_pipeline)
        for key in set(loader_augment.DEFAULTS) - set(used):  # a view-making task: no crop_scale to record
            params.pop(key, None)
    input_checks.check_encoder(params["arch"], params["size"], task)  # takes SIZE (and the task's views), pools
    check_comet(params.get("comet", "auto"))
    resolve_device(params.get("device", "auto"))
    if "nproc" in params:  # NPROC, NNODES, NODE_RANK, MASTER together, with BS (a global batch split evenly)
        from ..distributed.launch import settings

        settings(params)
    root = check_data(params["data"], spec)
    check_resources(params, root, task)
    for needed, maker in spec.needs if not in_pipeline else []:  # a pipeline writes them on the way
        if not (run_dir / needed).exists():
            raise ConfigError(f"{run_dir}/{needed} does not exist: run `make {maker} VERSION={version}` first")
    if params.get("from_version", "none") != "none" and not (in_pipeline and params["from_version"] == version):
        encoder = runs.encoder_path(runs_dir, params["from_version"])
        input_checks.check_encoder_arch(encoder, params["arch"], params["from_version"])
    if stage == "evaluate" and not in_pipeline:  # a pipeline's transfer and evaluate share one SPLIT
        from ..data.split import scoring_split

        scoring_split(params.get("split"), runs.stage_record(run_dir, "transfer").get("config", {}).get("split"), version)
    if not new_version:
        check_overwrite(run_dir, spec, force, resume)
    template = repo / "notebooks" / spec.notebook
    return StagePlan(stage, version, runs_dir, template, params, force, resume, runs.environment_info(repo))


def resolve_parameters(stage: str, given: dict, runs_dir: Path, version: str, in_pipeline: bool = False) -> dict:
    """The stage's parameters: its spec's defaults, then what it inherits from earlier stages, then the values
    given, then data-dependent defaults and checks (config.resolve). Used before compute, and by `start()` for a
    notebook run by hand."""
    spec = stage_spec(stage)
    params = spec.defaults()
    params.update(inherited(spec, runs_dir / version, given, version))
    params.update({k: v for k, v in given.items() if k in params})
    params.update(version=version, runs_dir=str(runs_dir))
    if "from_version" in params and not params["from_version"]:
        params["from_version"] = version  # FROM defaults to the version itself
    return config.resolve(stage, params)


def task_param_names(task: str) -> set[str]:
    """Parameter names of a task (empty for an unknown task: that error comes from get_task)."""
    from ..tasks import task_names, task_params

    return set(task_params(task)) if task in task_names() else set()


def inherited(spec: Stage, run_dir: Path, given: dict, version: str) -> dict:
    """What a stage must share with the stages before it in this version (or in FROM), by its spec's rules."""
    out = {}
    source = given.get("from_version") or version
    for rule in spec.inherits:
        folder = run_dir if rule.of == "self" else (None if source == "none" else run_dir.parent / source)
        recorded = runs.recorded_config(folder, rule.stage) if folder is not None else {}
        for key in rule.keys:
            if key in out or recorded.get(key) is None:
                continue
            if rule.must_match and given.get(key) not in (None, "", recorded[key]):
                raise ConfigError(f"{key.upper()}={given[key]} but the {rule.stage} stage of {folder.name} used "
                                  f"{recorded[key]}: a {spec.name} must match what it loads")
            out[key] = recorded[key]
    return out


def truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def check_arch(arch: str) -> None:
    """Unknown names fail with create_encoder's message; known ones are not built here."""
    import timm

    from ..models.encoders import create_encoder

    if arch != "tinyconv" and not timm.is_model(arch):
        create_encoder(arch)


def check_comet(mode: str) -> None:
    if mode == "online" and not os.environ.get("COMET_API_KEY"):
        raise ConfigError("COMET=online needs COMET_API_KEY in the environment (or use COMET=offline / off)")


def check_resources(params: dict, root: Path, task) -> None:
    """The image cache fits on the disk and a batch in memory; then the task can make a batch of this size."""
    from ..data.layout import load_layout
    from .data import default_cache_dir

    n_images = sum(load_layout(root).counts().values())
    input_checks.check_fits(n_images, params["size"], config.storage_size(params["size"]), params["bs"],
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
