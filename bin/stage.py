#!/usr/bin/env python
"""Run one stage (or the whole pipeline) of a version: check everything, then execute its notebook.

    python bin/stage.py pretrain --version v8 --task patchwork --data sample -p pct_pos 0.7

Every check runs before any compute and ends in one line on stderr with exit code 2; runs/ stays as it
was. The executed notebook goes to runs/<version>/, run.json records the parameters and each stage's
status (running, done, failed, interrupted). Ctrl-C or SIGTERM is passed on to the notebook's kernel, so
training stops after saving its last complete epoch; RESUME=1 continues from there.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from imgwang.errors import ConfigError, ImgwangError  # noqa: E402
from imgwang.stages.plan import PIPELINE, StagePlan, plan_stage, truthy  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", help="pretrain | transfer | evaluate | review | pipeline")
    p.add_argument("--version", default="", help="run folder under runs/ (default: next free for pretrain/pipeline, else newest)")
    p.add_argument("--data", default="", help="sample | imagewang | imagewang-320 | imagewang-full | path")
    p.add_argument("--task", default="", help="pretext task (pretrain)")
    p.add_argument("--arch", default="", help="timm model name or tinyconv")
    for name in ("size", "epochs", "bs", "lr", "seed", "runs"):
        p.add_argument(f"--{name}", default="")
    p.add_argument("--device", default="", help="auto | cpu | cuda | mps")
    p.add_argument("--from", dest="from_version", default="", help="transfer: version whose encoder to load, or none")
    p.add_argument("--comet", default="", help="auto | off | offline | online")
    p.add_argument("--force", default="", help="1: run again in an existing version, moving old files aside")
    p.add_argument("--resume", default="", help="1: continue an interrupted stage from its last complete epoch")
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="further parameter")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # papermill logs the notebook's printed output (epoch lines, results) at INFO: show it live
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    logging.getLogger("papermill").addFilter(lambda r: not r.getMessage().startswith(("Executing Cell", "Ending Cell")))
    stages = [args.stage]
    new_version = not args.version and args.stage in ("pretrain", "pipeline")
    try:
        if args.stage == "pipeline":  # a FROM=none pipeline is the random-init baseline: nothing to pretrain
            stages = PIPELINE[1:] if args.from_version == "none" else PIPELINE
            if truthy(args.resume):  # continue the first stage not done, then run the rest
                stages = resumed_pipeline(args, stages)
                new_version = False
        resume_first = args.resume
        plans = [plan_stage(stages[0], args, REPO, in_pipeline=args.stage == "pipeline")]
        for later in stages[1:]:  # the later stages of a pipeline go into the same version
            args.version, args.resume = plans[0].version, ""
            plans.append(plan_stage(later, args, REPO, in_pipeline=True))
        args.resume = resume_first
        used = {name for p in plans for name in (*p.parameters, *p.parameters.get("task_params", {}))}
        unknown = sorted({name for name, _ in args.p} - used)
        if unknown:  # in a pipeline each stage takes what it knows: a name no stage knows is a typo
            raise ConfigError(f"unknown parameter {', '.join(map(repr, unknown))}: no stage of {args.stage} takes it")
        lock = claim_and_lock(plans, new_version)
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        for plan in plans:
            lock.set_stage(plan.stage)
            rc = execute(plan)
            if rc:
                return rc
    finally:
        lock.release()
    print(f"done: {', '.join(p.stage for p in plans)} in {plans[0].run_dir.relative_to(REPO) if plans[0].run_dir.is_relative_to(REPO) else plans[0].run_dir}")
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


def forward_signals_to_kernel():
    """Pass Ctrl-C / SIGTERM on to the notebook kernel (it runs in its own session) as SIGINT."""
    import psutil

    state = {"interrupted": False}

    def handler(signum, frame):
        state["interrupted"] = True
        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(signal.SIGINT)
            except psutil.Error:
                pass

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return state


def execute(plan: StagePlan) -> int:
    import papermill as pm
    from imgwang import runs
    from imgwang.kernels import StageKernelManager

    plan.prepare_run_dir()
    rel = plan.notebook_out.relative_to(REPO) if plan.notebook_out.is_relative_to(REPO) else plan.notebook_out
    print(f"{plan.stage}: executing {plan.template.name} -> {rel}", flush=True)
    state = forward_signals_to_kernel()
    start = time.time()
    try:
        pm.execute_notebook(
            str(plan.template), str(plan.notebook_out), parameters=plan.parameters, cwd=str(REPO),
            kernel_name="python3", log_output=True, progress_bar=False, kernel_manager_class=StageKernelManager,
        )
    except pm.PapermillExecutionError as e:
        interrupted = state["interrupted"] or e.ename in ("TrainingInterrupted", "KeyboardInterrupt")
        status = "interrupted" if interrupted else "failed"
        runs.update_stage(plan.run_dir, plan.stage, status=status, ended=now(), error=runs.error_text(f"{e.ename}: {e.evalue}"))
        hint = f"; continue with RESUME=1 VERSION={plan.version}" if interrupted else ""
        print(f"error: {plan.stage} {status} in {rel} ({e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}){hint}", file=sys.stderr)
        return 130 if interrupted else 1
    except Exception as e:  # kernel died, notebook unreadable...: still recorded, still one line
        died = type(e).__name__ == "DeadKernelError"  # killed by a signal, most often the OOM killer
        status = "interrupted" if state["interrupted"] else "interrupted (kernel died)" if died else "failed"
        text = runs.error_text(f"{type(e).__name__}: {e}")
        runs.update_stage(plan.run_dir, plan.stage, status=status, ended=now(), error=text)
        hint = (f"; the kernel was killed (out of memory?): free memory, then continue from the last complete epoch "
                f"with RESUME=1 VERSION={plan.version}") if died else ""
        print(f"error: {plan.stage} {status}: {text.splitlines()[0] if text else ''}{hint}", file=sys.stderr)
        return 130 if state["interrupted"] or died else 1
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if state["interrupted"]:  # the signal came after training finished: the stage still completed
        print(f"{plan.stage}: signal received after the work was done; results kept", file=sys.stderr)
    runs.update_stage(plan.run_dir, plan.stage, status="done", ended=now(), wall_s=round(time.time() - start, 1))
    return 0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


if __name__ == "__main__":
    sys.exit(main())
