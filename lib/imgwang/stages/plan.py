"""Everything a stage checks before compute starts, and the resolved parameters its notebook gets.

Later stages inherit what they must agree on from the version's earlier stages (run.json): transfer
takes the architecture of the encoder it loads, evaluate and review take the transfer's data, size and
architecture. A value given on the command line always wins; a contradiction is an error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import config, input_checks, runs
from ..device import resolve_device
from ..errors import ConfigError
from . import claim
from . import resume as resuming

PIPELINE = ["pretrain", "transfer", "evaluate", "review"]
# Files each stage writes: FORCE=1 moves them aside before the stage runs again.
STAGE_FILES = {
    "pretrain": ["01-pretrain.ipynb", "encoder.pt", "pretext_model.pt", "checkpoints/pretrain"],
    "transfer": ["02-transfer.ipynb", "classifier.pt", "checkpoints"],
    "evaluate": ["03-evaluate.ipynb", "predictions.pt", "predictions.csv"],
    "review": ["04-review.ipynb"],
}
# Files a later stage reads from its version folder, and the stage that writes them.
PREREQUISITES = {
    "evaluate": [("classifier.pt", "transfer")],
    "review": [("classifier.pt", "transfer"), ("predictions.pt", "evaluate")],
}


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
    def run_dir(self) -> Path:
        return self.runs_dir / self.version

    @property
    def notebook_out(self) -> Path:
        return self.run_dir / runs.STAGES[self.stage]

    def prepare_run_dir(self) -> None:
        """Create the folder, move old files aside when forced (with what later stages built from them),
        record the stage as running."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.force:
            later = resuming.dependents(self.run_dir, self.stage)
            moved = runs.move_aside(self.run_dir, [f for s in (self.stage, *later) for f in stage_files(self.run_dir, s)])
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


def stage_files(run_dir: Path, stage: str) -> list[str]:
    """The files a stage writes (its notebook first); transfer's checkpoints are its own transfer-* folders."""
    files = [f for f in STAGE_FILES[stage] if not (stage == "transfer" and f == "checkpoints")]
    if stage == "transfer":
        files += [f"checkpoints/{p.name}" for p in (run_dir / "checkpoints").glob("transfer-*")]
    return files


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def notebook_parameters(template: Path) -> dict:
    import papermill as pm

    return pm.inspect_notebook(str(template))


def parse_value(text: str):
    """`-p name value`: numbers, booleans, lists and dicts as YAML; anything else stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def recorded_config(run_dir: Path, stage: str) -> dict:
    return runs.read_run_json(run_dir).get("stages", {}).get(stage, {}).get("config", {}) or {}


def plan_stage(stage: str, args, repo: Path, in_pipeline: bool = False) -> StagePlan:
    if stage not in runs.STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(runs.STAGES)}, pipeline")
    runs_dir = Path(args.runs_dir)
    starts_version = stage == "pretrain" or in_pipeline
    version = runs.check_version_name(args.version) if args.version else (
        runs.next_version(runs_dir) if starts_version else runs.newest_version(runs_dir))
    runs.check_version_path(runs_dir, version)
    run_dir = runs_dir / version
    new_version = not args.version and starts_version  # claimed after the checks, maybe as a later number
    if not new_version:
        claim.check_not_busy(run_dir)
    force, resume = truthy(args.force), truthy(args.resume)
    if force and resume:
        raise ConfigError("FORCE=1 and RESUME=1 contradict each other: FORCE starts over, RESUME continues")
    recorded = resuming.recorded_settings(run_dir, stage) if resume else {}
    template = repo / "notebooks" / runs.STAGES[stage]
    accepted = notebook_parameters(template)

    given = {k: v for k, v in {
        "data": args.data, "arch": args.arch, "size": args.size, "epochs": args.epochs, "bs": args.bs,
        "lr": args.lr, "seed": args.seed, "device": args.device, "comet": args.comet,
    }.items() if v != ""}
    if stage == "pretrain" and args.task:
        given["task"] = args.task
    if stage in ("transfer", "evaluate") and args.from_version:
        given["from_version"] = args.from_version
    if stage == "transfer" and args.runs:
        given["runs"] = args.runs

    task_params = {}
    task = given.get("task") or recorded.get("task") or eval_default(accepted.get("task", {}).get("default", "''"))
    own_task_params = pretrain_task_params(task)
    by_p = {}
    for name, text in args.p:
        if name in accepted and name not in ("version", "runs_dir"):
            by_p[name] = parse_value(text)
        elif stage == "pretrain" and (not in_pipeline or name in own_task_params):
            task_params[name] = parse_value(text)
        elif not in_pipeline:
            raise ConfigError(f"unknown parameter {name!r} for {stage}; it takes: {', '.join(sorted(accepted))}")
    input_checks.check_explicit_zeros(by_p)
    given.update(input_checks.coerce_types(by_p, {k: eval_default(v["default"]) for k, v in accepted.items()}))
    if own_task_params:
        from ..tasks import task_params as task_defaults

        task_params = input_checks.coerce_types(task_params, task_defaults(task), what="task parameter ")
    if resume:  # the recorded settings, then what was given (which must agree: checked once resolved)
        given = {**{k: v for k, v in recorded.items() if k != "task_params"}, **given}
        task_params = {**(recorded.get("task_params") or {}), **task_params}

    params = {k: v["default"] for k, v in accepted.items()}
    params = {k: eval_default(v) for k, v in params.items()}
    params.update(inherited(stage, run_dir, given, in_pipeline, version))
    params.update(given)
    params.update(version=version, runs_dir=str(runs_dir), resume=resume)
    params = {k: v for k, v in params.items() if k in accepted}
    if "from_version" in params and not params["from_version"]:
        params["from_version"] = version  # FROM defaults to the version itself
    if stage == "pretrain":
        params["task_params"] = {**(params.get("task_params") or {}), **task_params}
    params["seed"] = config.non_negative_int("seed", params.get("seed", 0))
    params = config.resolve(stage, params)
    input_checks.check_finite(params)
    if resume:
        resuming.check_same_settings(stage, version, recorded, params)

    check_arch(params["arch"])
    task = None
    if stage == "pretrain":
        from ..tasks import get_task

        task = get_task(params["task"], **params["task_params"])
    check_comet(params.get("comet", "auto"))
    resolve_device(params.get("device", "auto"))
    root = check_data(params["data"], stage)
    check_resources(params, root, task)
    for needed, maker in PREREQUISITES.get(stage, []) if not in_pipeline else []:  # a pipeline writes them on the way
        if not (run_dir / needed).exists():
            raise ConfigError(f"{run_dir}/{needed} does not exist: run `make {maker} VERSION={version}` first")
    if stage in ("transfer", "evaluate") and params.get("from_version", "none") != "none":
        if not (in_pipeline and params["from_version"] == version):
            encoder = runs.encoder_path(runs_dir, params["from_version"])
            input_checks.check_encoder_arch(encoder, params["arch"], params["from_version"])
    if not new_version:
        check_overwrite(run_dir, stage, force, resume)
    return StagePlan(stage, version, runs_dir, template, params, force, resume, runs.environment_info(repo))


def pretrain_task_params(task: str) -> set[str]:
    """Parameter names of a task (empty for an unknown task: that error comes from get_task)."""
    from ..tasks import task_names, task_params

    return set(task_params(task)) if task in task_names() else set()


def eval_default(text: str):
    """papermill reports parameter defaults as source text; turn them into values."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def inherited(stage: str, run_dir: Path, given: dict, in_pipeline: bool, version: str) -> dict:
    """What a later stage must share with the stages before it in this version (or in FROM)."""
    out = {}
    pre = recorded_config(run_dir, "pretrain")
    if stage == "transfer":
        source = given.get("from_version", version)
        src_pre = recorded_config(run_dir.parent / source, "pretrain") if source != "none" else {}
        if src_pre.get("arch"):
            if given.get("arch") and given["arch"] != src_pre["arch"]:
                raise ConfigError(f"ARCH={given['arch']} but the encoder of {source} is a {src_pre['arch']}")
            out["arch"] = src_pre["arch"]
        out["data"] = pre.get("data") or src_pre.get("data") or "imagewang"
    elif stage in ("evaluate", "review"):
        tra = recorded_config(run_dir, "transfer")
        if tra:
            out.update({k: tra[k] for k in ("data", "arch", "size", "from_version") if k in tra})
        elif pre:
            out["data"] = pre.get("data")
        if stage == "review":
            out.pop("from_version", None)
    return {k: v for k, v in out.items() if v is not None}


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
    from ..stages.data import default_cache_dir

    n_images = sum(load_layout(root).counts().values())
    input_checks.check_fits(n_images, params["size"], config.storage_size(params["size"]), params["bs"],
                            default_cache_dir(), params.get("device", "auto"))
    if task is not None:
        input_checks.check_task_batch(task, params["bs"], params["size"])


def check_data(data: str, stage: str) -> Path:
    """The data exists (fetched or generated if need be) and, past pretraining, has classes. Returns its root."""
    from ..data.layout import is_plain_folder
    from ..data.resolve import KNOWN, resolve_data

    root = resolve_data(data)  # lists and checks the layout once
    if data not in KNOWN:
        input_checks.check_utf8_names(root)
    if stage != "pretrain" and is_plain_folder(root):
        raise ConfigError(
            f"DATA={data} is a folder of images without classes: it can be pretrained on, not used by {stage}. "
            f"Fine-tune its encoder on labelled data with `make transfer VERSION=<new> FROM=<this version> "
            f"DATA=<folder in Imagewang layout>`")
    return root


def check_overwrite(run_dir: Path, stage: str, force: bool, resume: bool) -> None:
    notebook = run_dir / runs.STAGES[stage]
    if notebook.exists() and not (force or resume):
        raise ConfigError(
            f"{notebook} already exists: use a new VERSION, FORCE=1 to run {stage} again (old files are moved "
            f"aside, never deleted) or RESUME=1 to continue an interrupted run")
