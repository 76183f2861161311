"""One resolved, checked configuration per stage, in one pass: the only place a stage's values are decided.

    cfg = resolve("pretrain", {"data": "sample", "epochs": 3})            # a script, a test
    cfg, task = resolve_with_task("pretrain", given, runs_dir=..., version="v8")   # planning

Order: the stage spec's defaults, what the stage inherits from the version's earlier stages (run.json; only
when a version is named), the values given, then the data's defaults for what is left empty (`by_data` in
the spec: there "0 or empty means the data's default" is declared), each parameter's own check (declared
beside it in the spec), no NaN or infinity anywhere, and last the rules that tie several values together
(RULES below: the task and its loader augmentation, the architecture, COMET, DEVICE, the launch settings,
evaluate's split). Every refusal is one ConfigError line; nothing is written anywhere.

`given_values` turns what bin/stage.py was given (Make variables, `-p NAME VALUE` texts, the settings a
RESUME continues with) into the `given` of `resolve`. A notebook run by hand resolves what it holds through
`resolve` too (imgwang.notebook.start); under bin/stage.py the driver resolves (stages/driver.plan_stage) and the
notebook takes the result as its `config` parameter.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from .. import runs
from ..core.errors import ConfigError
from ..spec import DEVICE, DISTRIBUTED, Stage, stage_spec

EMPTY = (None, "", 0, 0.0)  # a `by_data` parameter left at one of these takes the data's default


def resolve(stage: str, given: dict, *, runs_dir=None, version: str | None = None, in_pipeline: bool = False) -> dict:
    return resolve_with_task(stage, given, runs_dir=runs_dir, version=version, in_pipeline=in_pipeline)[0]


def resolve_with_task(stage: str, given: dict, *, runs_dir=None, version: str | None = None,
                      in_pipeline: bool = False) -> tuple[dict, object]:
    """(the stage's configuration, its task object or None). Keys the stage does not declare pass through."""
    spec = stage_spec(stage)
    cfg = spec.defaults()
    if version is not None:  # a named version: what it must share with its earlier stages, from run.json
        cfg.update(inherited(spec, Path(runs_dir) / version, given, version))
    cfg.update(given)
    if version is not None:
        cfg.update(version=version, runs_dir=str(runs_dir))
    if "from_version" in cfg and not cfg["from_version"]:
        cfg["from_version"] = cfg["version"]  # FROM defaults to the version itself
    real = 0 if cfg.get("data", "imagewang") == "sample" else 1
    for p in spec.params:
        if p.by_data and cfg.get(p.name) in EMPTY:
            cfg[p.name] = p.by_data[real]
        cfg[p.name] = p.check(p.name, cfg[p.name]) if p.check else coerce_types({p.name: cfg[p.name]},
                                                                                {p.name: p.default})[p.name]
    check_finite(cfg)
    task = None
    for rule in RULES:
        task = rule(cfg, spec, in_pipeline) or task
    return cfg, task


def launch_settings(given: dict) -> dict:
    """A node other than node 0 (NODE_RANK > 0) plans nothing: its launch settings and DEVICE, checked as
    planning checks them (empty values take their defaults)."""
    cfg = {p.name: p.default for p in (*DISTRIBUTED, DEVICE)}
    cfg.update({k: v for k, v in given.items() if k in cfg and v not in (None, "")})
    for p in DISTRIBUTED:
        cfg[p.name] = p.check(p.name, cfg[p.name]) if p.check else cfg[p.name]
    device_rule(cfg, None, False)
    launch_rule(cfg, None, False)
    return cfg


# ---- what was given ---------------------------------------------------------------------------------------

def given_values(spec: Stage, make_values: dict, p_values: list, recorded: dict, in_pipeline: bool,
                 resume: bool = False) -> dict:
    """The `given` of `resolve` from Make variables (texts, empty = not given), `-p NAME VALUE` pairs (YAML
    texts) and, for RESUME=1, the recorded settings (what is given must then agree: checked once resolved) and
    the stage's `resume` flag. In a pipeline a `-p` name this stage does not take belongs to another stage."""
    given = {p.name: make_values[p.name] for p in spec.params
             if p.make and not p.internal and make_values.get(p.name, "") != ""}
    takes_task_params = spec.param("task_params") is not None
    task = given.get("task", recorded.get("task", spec.defaults().get("task")))
    task_defaults = task_param_defaults(task) if takes_task_params else {}
    by_p, task_params = {}, {}
    for name, text in p_values:
        p = spec.param(name)
        if p is not None and not p.internal:
            by_p[name] = parse_value(text)
        elif takes_task_params and (not in_pipeline or name in task_defaults):
            task_params[name] = parse_value(text)
        elif not in_pipeline:
            raise ConfigError(f"unknown parameter {name!r} for {spec.name}; it takes: {', '.join(sorted(spec.names))}")
    for name, value in by_p.items():  # `-p epochs 0` would silently become the default: refused instead
        if spec.param(name).by_data and (value in (0, 0.0) and not isinstance(value, bool) or value == ""):
            raise ConfigError(f"{name.upper()}={value!r} given explicitly: it must be positive (leave it out "
                              f"for the data's default)")
    given.update(coerce_types(by_p, spec.defaults()))
    if recorded:
        given = {**{k: v for k, v in recorded.items() if k != "task_params"}, **given}
        task_params = {**(recorded.get("task_params") or {}), **task_params}
    if takes_task_params:
        given["task_params"] = task_params
    if "resume" in spec.names:
        given["resume"] = resume
    return given


def parse_value(text: str):
    """`-p name value`: numbers, booleans, lists and dicts as YAML; anything else stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def task_param_defaults(task) -> dict:
    """A task's parameters with their defaults (empty for an unknown task: that error comes from get_task)."""
    from ..tasks import is_task, task_params

    return task_params(task) if is_task(task) else {}


def coerce_types(given: dict, defaults: dict, what: str = "") -> dict:
    """A value given with -p must have the type of the parameter's default: a flag a bool, a count a whole
    number, a rate a number, a name a string (a default of None or a tuple takes what the code checks).
    Numbers YAML reads as text (1e-3) become numbers first. Returns the values, converted."""
    out = dict(given)
    for key, value in given.items():
        if key not in defaults:
            continue
        default = defaults[key]
        expected = _kind(default)
        if isinstance(value, str) and expected in ("a number", "a whole number"):
            value = _number(value)
        if expected is None or _fits(value, expected):
            out[key] = float(value) if expected == "a number" and not isinstance(value, bool) else value
            continue
        raise ConfigError(f"{what}{key}={given[key]!r} must be {expected} (like its default {default!r})")
    return out


def _number(text: str):
    try:
        number = float(text)
    except ValueError:
        return text
    if number.is_integer() and "." not in text and "e" not in text.lower():
        return int(number)
    return number


def _kind(default) -> str | None:
    for kind, expected in ((bool, "true or false"), (int, "a whole number"), (float, "a number"), (str, "a word"),
                           (dict, "a mapping")):
        if isinstance(default, kind):
            return expected
    return None


def _fits(value, expected: str) -> bool:
    if isinstance(value, bool):
        return expected == "true or false"
    kinds = {"true or false": (), "a whole number": (int,), "a number": (int, float), "a word": (str,), "a mapping": (dict,)}
    return isinstance(value, kinds[expected])


def check_finite(params: dict, nested: bool = False) -> None:
    """NaN or infinity anywhere in the parameters (task parameters included) is refused."""
    for key, value in params.items():
        if isinstance(value, dict):
            check_finite(value, nested=True)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f'task parameter {key}' if nested else key.upper()}={v} is not a finite number")


# ---- what a stage takes from the version's earlier stages -------------------------------------------------

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


# ---- rules over several values (each: cfg, spec, in_pipeline -> None, or the task it built) ----------------

def task_rule(cfg: dict, spec: Stage, in_pipeline: bool):
    """The task exists and takes its parameters (built once, here); its augmentation: one it forbids is refused,
    and a task that cuts its own views keeps only what reaches its views (flip_p, rotations), not the loader's
    crop (a crop_scale given is refused: it would change nothing; a pipeline passes it on to fine-tuning)."""
    if "task" not in cfg:
        return None
    from ..tasks import get_task

    params = coerce_types(cfg["task_params"], task_param_defaults(cfg["task"]), what="task parameter ")
    try:
        task = get_task(cfg["task"], **params)
    except (TypeError, ValueError, ArithmeticError) as e:  # a task's own check of its parameters' values
        raise ConfigError(f"TASK={cfg['task']} with {params}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    cfg["task_params"] = params
    loader_only = [p.name for p in spec.params if p.augment == "loader"]
    for name, why in task.forbids_augment.items():
        if name in cfg and cfg[name] != spec.param(name).default:
            raise ConfigError(f"{name.upper()}={cfg[name]} cannot be used with TASK={task.name}: {why}")
    if task.makes_views:
        changed = [name for name in loader_only if cfg.get(name, spec.param(name).default) != spec.param(name).default]
        if changed and not in_pipeline:
            raise ConfigError(f"{changed[0].upper()}={cfg[changed[0]]} does not apply to TASK={task.name}: it cuts its "
                              f"own views from the whole image (set their areas with its task parameters, e.g. "
                              f"P=\"-p min_scale 0.2\")")
        for name in loader_only:  # the run records no loader augmentation it did not use
            cfg.pop(name, None)
    return task


def arch_rule(cfg: dict, spec: Stage, in_pipeline: bool) -> None:
    """Unknown names fail with create_encoder's message; known ones are not built here."""
    if "arch" not in cfg:
        return
    import timm

    from ..models.encoders import create_encoder

    if cfg["arch"] != "tinyconv" and not timm.is_model(cfg["arch"]):
        create_encoder(cfg["arch"])


def comet_rule(cfg: dict, spec: Stage, in_pipeline: bool) -> None:
    if cfg.get("comet") == "online" and not os.environ.get("COMET_API_KEY"):
        raise ConfigError("COMET=online needs COMET_API_KEY in the environment (or use COMET=offline / off)")


def device_rule(cfg: dict, spec: Stage, in_pipeline: bool) -> None:
    from ..core.device import resolve_device

    if not isinstance(cfg.get("device", "auto"), str):
        raise ConfigError(f"DEVICE={cfg['device']!r} must be a word: auto, cpu, cuda, cuda:N or mps")
    resolve_device(cfg.get("device", "auto"))


def launch_rule(cfg: dict, spec: Stage, in_pipeline: bool) -> None:
    """NODE_RANK below NNODES, MASTER as host:port (needed with NNODES > 1), one process per GPU, and BS (the
    global batch) split evenly over every process."""
    if "nproc" not in cfg:
        return
    nproc, nnodes, node_rank, master = cfg["nproc"], cfg["nnodes"], cfg["node_rank"], str(cfg.get("master") or "")
    if node_rank >= nnodes:
        raise ConfigError(f"NODE_RANK={node_rank} must be below NNODES={nnodes} (nodes count from 0)")
    if master:
        host, _, port = master.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"MASTER={master!r} must be host:port, e.g. 10.0.0.1:29500 (node 0's address)")
    elif nnodes > 1:
        raise ConfigError(f"NNODES={nnodes} needs MASTER=host:port, the address of node 0 (NODE_RANK=0)")
    if nproc > 1 and str(cfg.get("device", "")).startswith(("cuda", "auto")):
        import torch

        gpus = torch.cuda.device_count()
        if gpus and nproc > gpus:
            raise ConfigError(f"NPROC={nproc} but this machine has {gpus} GPU(s): one process per GPU")
        if str(cfg.get("device")).startswith("cuda") and not gpus:
            raise ConfigError(f"DEVICE={cfg['device']} with NPROC={nproc}, but no CUDA device is available")
    world = nproc * nnodes
    if world > 1 and isinstance(cfg.get("bs"), int) and cfg["bs"] % world:
        raise ConfigError(f"BS={cfg['bs']} is the global batch and must split evenly over {world} processes "
                          f"(NPROC={nproc} x NNODES={nnodes})")


def split_rule(cfg: dict, spec: Stage, in_pipeline: bool) -> None:
    """evaluate alone scores on the split its transfer used (a pipeline's transfer and evaluate share one)."""
    if spec.name != "evaluate" or in_pipeline or not cfg.get("version"):
        return
    from ..data.split import scoring_split

    run_dir = Path(cfg["runs_dir"]) / cfg["version"]
    scoring_split(cfg.get("split"), runs.stage_record(run_dir, "transfer").get("config", {}).get("split"), cfg["version"])


RULES = (arch_rule, task_rule, comet_rule, device_rule, launch_rule, split_rule)
