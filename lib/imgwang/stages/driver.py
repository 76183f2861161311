"""Running what bin/stage.py was asked: one stage, a pipeline, replicate groups (SEEDS), a resumed pipeline, or a
machine joining a multi-node run. bin/stage.py only turns words into `args` (an argparse namespace whose
attributes are the spec's Make variables, `p` and `runs_dir`) and calls `run(args, repo)`.

Every stage of the command is planned before the first one runs (`plan_stage`: its version placed, its
configuration resolved once by stages/resolve.py, then checked against the machine and the files by
stages/plan.py): a bad value stops with one `error:` line, exit code 2, and runs/ as it was. Then the version
is claimed (when new) and locked, and each stage's notebook is executed by imgwang.stages.kernel with the
resolved configuration as its one parameter, `config`; run.json records it and how each stage ended.

How a value travels: `make pipeline EPOCHS=5` followed from bin/stage.py's entry to the training loop, 10 stops
and one return (a helper that hands the value straight back to its caller, which passes it on untouched, is not
listed twice: spec.checks returns 5 into resolve, whose last steps, the NaN check and the rules across values,
leave it as it is; listed again, resolve makes it 11 stops and 2 returns):
  entry  bin/stage.py main: `EPOCHS=5` -> `--epochs 5` -> args.epochs "5"
  1. driver.plan_all -> stage_args (in a pipeline EPOCHS is pretraining's, FT_EPOCHS fine-tuning's) -> plan_stage
  2. resolve.given_values, resolve_with_task: the spec's entry for it (default 0, by_data 3 on sample / 20)
  3. spec.checks.positive_int, called in that one pass -> 5
  4. driver, the one return: plan_stage keeps it in the StagePlan; execute -> kernel.run_notebook
  5. kernel.execute -> papermill.execute_notebook
  6. papermill: the injected cell `config = {..., "epochs": 5, ...}` of runs/<v>/01-pretrain.ipynb
  7. notebook.start: takes `config` as it is (a notebook run by hand resolves its values through resolve)
  8. stages.pretrain.run_pretrain(cfg)
  9. train.settings.FitSettings.of(cfg)
 10. train.loop.fit: settings.epochs
Off the path, nothing read back on the way: plan.check_machine_and_files reads the configuration (EPOCHS only
for a RESUME, which must keep it); StagePlan.prepare_run_dir records it in run.json for later stages, RESUME
and `make compare`; run_pretrain sizes SwAV's prototypes and the kNN monitor by it. `crop_scale` is checked in
the same pass (spec.checks.crop_scale; a task that cuts its own views takes none) and applied once, by
data.loader_augment.make_loader_augment, whichever loader asks for it (StageData.loader with
loader_augment.chosen(cfg)).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

from .. import runs
from ..core.clock import now
from ..core.errors import ConfigError, ImgwangError
from ..core.plain import to_plain
from ..runs import claim
from ..spec import PIPELINE, STAGES, stage_spec
from . import replicates
from . import resolve as resolving
from .plan import check_machine_and_files, place, truthy
from .stage_plan import StagePlan


def run(args, repo: Path) -> int:
    """Exit code: 0 done, 2 refused before compute, 1 failed, 130 interrupted."""
    stages = stages_of(args)
    if args.node_rank not in ("", "0"):  # another machine of a multi-node run: it lends its ranks, nothing more
        return join_node_zero(args, stages)
    new_version = not args.version and args.stage in ("pretrain", "pipeline")  # claimed once checked
    try:
        if args.stage == "pipeline" and truthy(args.resume):  # the first stage not done, then the rest
            stages = resumed_pipeline(args, stages)
            new_version = False
        n_seeds = replicates.count(args.seeds, args.stage)
        if n_seeds == 1:
            groups = [("", plan_all(args, stages, repo))]
        else:
            groups = plan_replicates(args, stages, n_seeds, repo)
            new_version = False  # the replicates' versions are named (and checked free) by planning
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, (group, plans) in enumerate(groups):
        try:  # the version is this process's from here: claimed when new, locked while its stages run
            lock = claim.claim_and_lock(plans, new_version)
        except ImgwangError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            if group:
                replicates.mark_group(plans[0].run_dir, group, k, len(groups))
            for i, plan in enumerate(plans):
                lock.set_stage(plan.stage)
                rc = execute(plan, repo)
                if rc == DONE_THEN_SIGNALLED:  # Ctrl-C or SIGTERM asked to stop: no further stage starts
                    if i + 1 < len(plans) or k + 1 < len(groups):
                        print(f"error: stopped by a signal after {plan.stage}; continue with RESUME=1 "
                              f"VERSION={plan.version}", file=sys.stderr)
                        return 130
                    rc = 0
                if rc:
                    return rc
        finally:
            lock.release()
        print(f"done: {', '.join(p.stage for p in plans)} in {shown(plans[0].run_dir, repo)}")
    return 0


def stages_of(args) -> list[str]:
    """The stages a command runs: a FROM=none pipeline is the random-init baseline, with nothing to pretrain."""
    if args.stage != "pipeline":
        return [args.stage]
    return [s for s in PIPELINE if not (args.from_version == "none" and STAGES[s].makes_encoder)]


def shown(path: Path, repo: Path) -> Path:
    return path.relative_to(repo) if path.is_relative_to(repo) else path


def join_node_zero(args, stages: list[str]) -> int:
    """NODE_RANK > 0: this machine's ranks join the run that node 0 plans, records and writes (they take node
    0's resolved configuration); nothing here is planned and nothing in runs/ is written. Evaluate and review
    run on node 0 alone, so a pipeline joins its pretrain and transfer."""
    from ..core.interrupt import TrainingInterrupted
    from ..distributed import launch
    from .resolve import launch_settings

    joined = [s for s in stages if STAGES[s].param("nproc") is not None]
    try:
        if not joined:
            raise ConfigError(f"{args.stage} runs on node 0 alone: run it there (NODE_RANK=0)")
        cfg = launch_settings(vars(args))
        for stage in joined:
            launch.launch(stage, cfg, Path(args.runs_dir), Path(args.runs_dir))
    except TrainingInterrupted as e:
        print(f"error: {e}; node 0 keeps the last complete epoch", file=sys.stderr)
        return 130
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    print(f"done: node {args.node_rank} took part in {', '.join(joined)}; the run is on node 0")
    return 0


def resumed_pipeline(args, stages: list[str]) -> list[str]:
    """`pipeline RESUME=1`: the stages from the first one not done (of VERSION, or the newest version); RESUME
    applies to that stage when it has something to resume, the rest run afresh."""
    from .resume import pipeline_start

    runs_dir = Path(args.runs_dir)
    args.version = runs.check_version_name(args.version) if args.version else runs.newest_version(runs_dir)
    first, resumable = pipeline_start(runs_dir / args.version, stages)
    args.resume = "1" if resumable else ""
    print(f"RESUME=1: {args.version} continues at {stages[first]}" + ("" if resumable else " (afresh: it never started)"))
    return stages[first:]


def plan_all(args, stages: list[str], repo: Path) -> list[StagePlan]:
    """Every stage checked before any runs; the later stages of a pipeline go into the same version (RESUME
    applies to the first stage only)."""
    pipeline = args.stage == "pipeline"
    plans = [plan_stage(stages[0], stage_args(args, stages[0], stages), repo, in_pipeline=pipeline)]
    for later in stages[1:]:
        args.version = plans[0].version
        one = stage_args(args, later, stages)
        one.resume = ""
        plans.append(plan_stage(later, one, repo, in_pipeline=True))
    check_used(args, plans)
    return plans


def plan_stage(stage: str, args, repo: Path, in_pipeline: bool = False, fetch: bool = True) -> StagePlan:
    """One stage of the command, planned: its version and run folder (stages/plan.py), its configuration resolved
    once (stages/resolve.py), that configuration checked against the machine and the files (stages/plan.py).
    fetch=False: plan without downloading a named dataset that is not here yet (a dry run)."""
    spec = stage_spec(stage)  # an unknown stage: one ConfigError line
    where = place(stage, args, in_pipeline)
    given = resolving.given_values(spec, vars(args), args.p, where.recorded, in_pipeline, where.resume)
    cfg, task = resolving.resolve_with_task(stage, given, runs_dir=where.runs_dir, version=where.version,
                                            in_pipeline=in_pipeline)
    check_machine_and_files(stage, where, cfg, task, in_pipeline, fetch)
    return StagePlan(stage, where.version, where.runs_dir, repo / "notebooks" / spec.notebook, cfg, where.force,
                     where.resume, runs.environment_info(repo))


def plan_replicates(args, stages: list[str], n: int, repo: Path) -> list[tuple[str, list[StagePlan]]]:
    """SEEDS=n: n versions of the pipeline, each pretrained with its own seed (imgwang.stages.replicates)."""
    seed = STAGES["pretrain"].param("seed").check("seed", args.seed or 0)
    n_runs = STAGES["transfer"].param("runs").check("runs", args.runs or 1)
    group, names = replicates.names(args.version, n, seed, Path(args.runs_dir))
    out = []
    for k, name in enumerate(names):
        own = replicates.seeds(seed, k, n_runs)
        plans = []
        for stage in stages:
            one = stage_args(args, stage, stages)
            one.version, one.seed = name, str(own["pretrain" if stage == "pretrain" else "transfer"])
            plans.append(plan_stage(stage, one, repo, in_pipeline=True))
        check_used(args, plans)
        out.append((group, plans))
    return out


def stage_args(args, stage: str, stages: list[str]):
    """EPOCHS, LR, BS set the stage being run; in a pipeline they set pretraining, and FT_EPOCHS, FT_LR,
    FT_BS set fine-tuning (also on their own: `make transfer FT_EPOCHS=20`)."""
    one = copy.copy(args)
    pipeline = args.stage == "pipeline"
    for name in ("epochs", "lr", "bs"):
        general, ft = getattr(args, name), getattr(args, f"ft_{name}")
        if ft and stage != "transfer" and "transfer" not in stages:
            raise ConfigError(f"FT_{name.upper()} sets fine-tuning: only `make transfer` and `make pipeline` take it")
        if pipeline and general and "pretrain" not in stages:
            raise ConfigError(f"{name.upper()}={general}: in a pipeline it sets pretraining, which a FROM=none pipeline "
                              f"skips; set fine-tuning with FT_{name.upper()}")
        if stage == "transfer":
            if not pipeline and general and ft and str(general) != str(ft):
                raise ConfigError(f"{name.upper()}={general} and FT_{name.upper()}={ft} contradict each other: give one")
            if ft and (check := stage_spec("transfer").param(name).check):  # a bad value named as it was given
                check(f"ft_{name}", ft)
            setattr(one, name, ft or ("" if pipeline else general))
        elif pipeline and stage != "pretrain":
            setattr(one, name, "")  # evaluate and review use their own defaults, not pretraining's
    return one


def check_used(args, plans: list[StagePlan]) -> None:
    used = {name for p in plans for name in (*p.parameters, *p.parameters.get("task_params", {}))}
    unknown = sorted({name for name, _ in args.p} - used)
    if unknown:  # in a pipeline each stage takes what it knows: a name no stage knows is a typo
        raise ConfigError(f"unknown parameter {', '.join(map(repr, unknown))}: no stage of {args.stage} takes it")


DONE_THEN_SIGNALLED = -1  # execute's code for a stage that completed while a signal asked the command to stop


def execute(plan: StagePlan, repo: Path) -> int:
    """Run one planned stage's notebook; record how it ended in run.json; one `error:` line when it did not.
    Returns the exit code, or DONE_THEN_SIGNALLED when the stage completed but a signal came meanwhile."""
    from .kernel import run_notebook

    plan.prepare_run_dir()
    rel = shown(plan.notebook_out, repo)
    print(f"{plan.stage}: executing {plan.template.name} -> {rel}", flush=True)
    start = time.time()
    config = {"config": to_plain(plan.parameters)}  # the notebook's start() takes it as it is
    outcome = run_notebook(plan.template, plan.notebook_out, config, cwd=repo, log_output=True)
    if outcome.ok:
        if outcome.signalled:  # the signal came after training finished: the stage still completed
            print(f"{plan.stage}: signal received after the work was done; results kept", file=sys.stderr)
        runs.update_stage(plan.run_dir, plan.stage, status="done", ended=now(), wall_s=round(time.time() - start, 1))
        return DONE_THEN_SIGNALLED if outcome.signalled else 0
    text = runs.error_text(outcome.error)
    runs.update_stage(plan.run_dir, plan.stage, status=outcome.status, ended=now(), error=text)
    first = outcome.error.splitlines()[0] if outcome.error else ""
    if outcome.in_cell:  # the executed notebook shows the failing cell
        hint = f"; continue with RESUME=1 VERSION={plan.version}" if outcome.status == "interrupted" else ""
        print(f"error: {plan.stage} {outcome.status} in {rel} ({first}){hint}", file=sys.stderr)
    else:  # kernel died, notebook unreadable...: still recorded, still one line
        hint = (f"; the kernel was killed (out of memory?): free memory, then continue from the last complete epoch "
                f"with RESUME=1 VERSION={plan.version}") if outcome.status == "interrupted (kernel died)" else ""
        print(f"error: {plan.stage} {outcome.status}: {text.splitlines()[0] if text else ''}{hint}", file=sys.stderr)
    return outcome.exit_code
