#!/usr/bin/env python
"""Run one stage (or the whole pipeline) of a version: check everything, then execute its notebook.

    python bin/stage.py pretrain --version v8 --task patchwork --data sample -p pct_pos 0.7
    python bin/stage.py pretrain VERSION=v8 TASK=patchwork DATA=sample -p pct_pos 0.7   (what make passes)

Every check runs before any compute and ends in one line on stderr with exit code 2; runs/ stays as it
was. The executed notebook goes to runs/<version>/, run.json records the parameters and each stage's
status (running, done, failed, interrupted). Ctrl-C or SIGTERM is passed on to the notebook's kernel
(imgwang.runner), so training stops after saving its last complete epoch; RESUME=1 continues from there.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from pathlib import Path

from imgwang import checks
from imgwang.clock import now
from imgwang.errors import ConfigError, ImgwangError
from imgwang.runner import log_cell_output
from imgwang.stages import replicates
from imgwang.stages.plan import StagePlan, plan_stage, truthy
from imgwang.stages.spec import PIPELINE, STAGES, make_vars, option_name

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv):
    """Options from the stage spec's Make variables (--data, --from, ...); `NAME=value` words, as the Makefile
    passes them, are the same options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", help=" | ".join([*STAGES, "pipeline"]))
    for var in make_vars():
        p.add_argument(option_name(var), dest=var.dest, default="", help=var.doc)
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="further parameter")
    return p.parse_args(make_words_to_options(argv if argv is not None else sys.argv[1:]))


def make_words_to_options(argv: list[str]) -> list[str]:
    """`EPOCHS=5` -> `--epochs 5` for every Make variable of the spec; any other upper-case NAME= is a typo."""
    known = {var.name: option_name(var) for var in make_vars()}
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "-p":  # a -p value may hold '=' itself
            out += argv[i:i + 3]
            i += 3
            continue
        name, eq, value = word.partition("=")
        if eq and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            if name not in known:
                raise ConfigError(f"unknown variable {name}; variables: {', '.join(known)}, P")
            out += [known[name], value]
        else:
            out.append(word)
        i += 1
    return out


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log_cell_output()
    stages = [args.stage]
    if args.node_rank not in ("", "0"):  # another machine of a multi-node run: it lends its ranks, nothing more
        pipeline = [s for s in PIPELINE if not (args.from_version == "none" and STAGES[s].makes_encoder)]
        return join_node_zero(args, pipeline if args.stage == "pipeline" else stages)
    new_version = not args.version and args.stage in ("pretrain", "pipeline")  # claimed once checked
    try:
        if args.stage == "pipeline":  # a FROM=none pipeline is the random-init baseline: nothing to pretrain
            stages = [s for s in PIPELINE if not (args.from_version == "none" and STAGES[s].makes_encoder)]
            if truthy(args.resume):  # continue the first stage not done, then run the rest
                stages = resumed_pipeline(args, stages)
                new_version = False
        n_seeds = replicates.count(args.seeds, args.stage)
        if n_seeds == 1:
            replicate_plans = [("", plan_all(args, stages))]
        else:
            replicate_plans = plan_replicates(args, stages, n_seeds)
            new_version = False  # the replicates' versions are named (and checked free) by planning
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, (group, plans) in enumerate(replicate_plans):
        try:  # the version is this process's from here: claimed when new, locked while its stages run
            lock = claim_and_lock(plans, new_version)
        except ImgwangError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            if group:
                replicates.mark_group(plans[0].run_dir, group, k, len(replicate_plans))
            for plan in plans:
                lock.set_stage(plan.stage)
                rc = execute(plan)
                if rc:
                    return rc
        finally:
            lock.release()
        where = plans[0].run_dir
        print(f"done: {', '.join(p.stage for p in plans)} in {where.relative_to(REPO) if where.is_relative_to(REPO) else where}")
    return 0


def join_node_zero(args, stages: list[str]) -> int:
    """NODE_RANK > 0: this machine's ranks join the run that node 0 plans, records and writes (they take node
    0's resolved configuration); nothing here is planned and nothing in runs/ is written. Evaluate and review
    run on node 0 alone, so a pipeline joins its pretrain and transfer."""
    from imgwang.distributed import launch
    from imgwang.stages.resolve import launch_settings
    from imgwang.train.interrupt import TrainingInterrupted

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
    from imgwang import runs
    from imgwang.stages.resume import pipeline_start

    runs_dir = Path(args.runs_dir)
    args.version = runs.check_version_name(args.version) if args.version else runs.newest_version(runs_dir)
    first, resumable = pipeline_start(runs_dir / args.version, stages)
    args.resume = "1" if resumable else ""
    print(f"RESUME=1: {args.version} continues at {stages[first]}" + ("" if resumable else " (afresh: it never started)"))
    return stages[first:]


def claim_and_lock(plans, new_version: bool):
    from imgwang.stages.claim import claim_and_lock as claim

    return claim(plans, new_version)


def plan_all(args, stages: list[str]) -> list[StagePlan]:
    """Every stage checked before any runs; the later stages of a pipeline go into the same version (RESUME
    applies to the first stage only)."""
    plans = [plan_stage(stages[0], stage_args(args, stages[0], stages), REPO, in_pipeline=args.stage == "pipeline")]
    for later in stages[1:]:
        args.version = plans[0].version
        one = stage_args(args, later, stages)
        one.resume = ""
        plans.append(plan_stage(later, one, REPO, in_pipeline=True))
    check_used(args, plans)
    return plans


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
            setattr(one, name, ft or ("" if pipeline else general))
        elif pipeline and stage != "pretrain":
            setattr(one, name, "")  # evaluate and review use their own defaults, not pretraining's
    return one


def check_used(args, plans: list[StagePlan]) -> None:
    used = {name for p in plans for name in (*p.parameters, *p.parameters.get("task_params", {}))}
    unknown = sorted({name for name, _ in args.p} - used)
    if unknown:  # in a pipeline each stage takes what it knows: a name no stage knows is a typo
        raise ConfigError(f"unknown parameter {', '.join(map(repr, unknown))}: no stage of {args.stage} takes it")


def plan_replicates(args, stages: list[str], n: int) -> list[tuple[str, list[StagePlan]]]:
    """SEEDS=n: n versions of the pipeline, each pretrained with its own seed (imgwang.stages.replicates)."""
    seed = checks.non_negative_int("seed", args.seed or 0)
    n_runs = checks.positive_int("runs", args.runs or 1)
    group, names = replicates.names(args.version, n, seed, Path(args.runs_dir))
    out = []
    for k, name in enumerate(names):
        own = replicates.seeds(seed, k, n_runs)
        plans = []
        for stage in stages:
            one = stage_args(args, stage, stages)
            one.version, one.seed = name, str(own["pretrain" if stage == "pretrain" else "transfer"])
            plans.append(plan_stage(stage, one, REPO, in_pipeline=True))
        check_used(args, plans)
        out.append((group, plans))
    return out


def execute(plan: StagePlan) -> int:
    from imgwang import runs
    from imgwang.runner import run_notebook

    plan.prepare_run_dir()
    rel = plan.notebook_out.relative_to(REPO) if plan.notebook_out.is_relative_to(REPO) else plan.notebook_out
    print(f"{plan.stage}: executing {plan.template.name} -> {rel}", flush=True)
    start = time.time()
    outcome = run_notebook(plan.template, plan.notebook_out, plan.parameters, cwd=REPO, log_output=True)
    if outcome.ok:
        if outcome.signalled:  # the signal came after training finished: the stage still completed
            print(f"{plan.stage}: signal received after the work was done; results kept", file=sys.stderr)
        runs.update_stage(plan.run_dir, plan.stage, status="done", ended=now(), wall_s=round(time.time() - start, 1))
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
