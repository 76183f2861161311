#!/usr/bin/env python
"""make leaderboard: the 72.94% Imagewang entry's recipe in one command (see imgwang/recipe.py).

    python bin/leaderboard.py SIZE=128                   # pretrain (SwAV, 100 epochs) + 5 fine-tuning runs
    python bin/leaderboard.py SIZE=128 DRY=1             # check and print the plan; nothing runs, runs/ untouched

(what `make leaderboard` passes; --size 128 --dry-run work too). Variables: SIZE, VERSION, DATA, DEVICE, SEED,
COMET, and for a try-out PRETRAIN_EPOCHS, FT_EPOCHS, RUNS.

Both stages are planned and checked before any compute (a bad value stops with one `error:` line, exit 2);
then 01-pretrain and 02-transfer run into one version through bin/stage.py's own planning and execution, and
the leaderboard line is printed at the end. --pretrain-epochs, --ft-epochs and --runs shorten the recipe for a
try-out (the result is then not the entry's protocol).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path

from imgwang.core.errors import ConfigError, ImgwangError
from imgwang.stages import recipe
from imgwang.stages.plan import awaits_download

REPO = Path(__file__).resolve().parents[1]


def load_stage_cli():
    """bin/stage.py as a module: its argument parser and its execute()."""
    spec = importlib.util.spec_from_file_location("imgwang_stage_cli", REPO / "bin" / "stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VARIABLES = ("SIZE", "VERSION", "DATA", "DEVICE", "SEED", "COMET", "PRETRAIN_EPOCHS", "FT_EPOCHS", "RUNS", "DRY")


def words_to_options(argv: list[str]) -> list[str]:
    """`SIZE=128` -> `--size 128`, `DRY=1` -> `--dry-run`; another upper-case NAME= is a typo."""
    out = []
    for word in argv:
        name, eq, value = word.partition("=")
        if not (eq and name.isupper()):
            out.append(word)
        elif name not in VARIABLES:
            raise ConfigError(f"unknown variable {name}; make leaderboard takes {', '.join(VARIABLES)}")
        elif name == "DRY":
            out += ["--dry-run"] if value.strip().lower() in ("1", "true", "yes", "on") else []
        else:
            out += ["--" + name.lower().replace("_", "-"), value]
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="128", help="128 (Imagewang-160), 192 or 256 (Imagewang-320)")
    p.add_argument("--version", default="", help="run folder under runs/ (default: the next free v<n>)")
    p.add_argument("--data", default="", help="default: imagewang at 128 px, imagewang-320 above")
    for name in ("device", "seed", "comet", "pretrain-epochs", "ft-epochs", "runs"):
        p.add_argument(f"--{name}", default="")
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--dry-run", action="store_true", help="plan and print, run nothing")
    return p.parse_args(argv)


def plan(args, cli):
    """Both stages' StagePlans, checked; the version is fixed by the first. A dry run downloads nothing: the
    checks that need the images of a dataset not fetched yet wait for the run."""
    from imgwang.stages.driver import plan_stage

    size = cli_int("SIZE", args.size)
    argvs = recipe.stage_argvs(args.version or "", size, args.data, args.device, args.seed,
                               cli_int("FT_EPOCHS", args.ft_epochs), cli_int("RUNS", args.runs),
                               cli_int("PRETRAIN_EPOCHS", args.pretrain_epochs), args.comet)
    lacking = lacking_task_params()
    argvs["pretrain"] = without_params(argvs["pretrain"], lacking)
    plans = []
    for stage, argv in argvs.items():
        stage_args = cli.parse_args([*argv, "--runs-dir", args.runs_dir])
        if plans:  # transfer loads the encoder the first stage will write: planned as a pipeline's later stage
            stage_args.version = stage_args.from_version = plans[0][0].version
        p = plan_stage(stage, stage_args, REPO, in_pipeline=bool(plans), fetch=not args.dry_run)
        unknown = sorted({n for n, _ in stage_args.p} - {*p.parameters, *p.parameters.get("task_params", {})})
        if unknown:
            raise ConfigError(f"{stage} takes no parameter {', '.join(map(repr, unknown))} (imgwang/recipe.py)")
        argv[argv.index("--version") + 1] = p.version
        if stage == "transfer":
            argv[argv.index("--from") + 1] = p.version
        plans.append((p, argv))
    return plans, lacking


def lacking_task_params() -> list[str]:
    """The recipe's task parameters this version of the task does not have (said in the plan, never hidden)."""
    from imgwang.tasks import task_names, task_params

    task = recipe.PRETRAIN["task"]
    known = task_params(task) if task in task_names() else {}  # task_names() registers every task
    return sorted(set(recipe.PRETRAIN["task_params"]) - set(known)) if known else []


def without_params(argv: list[str], names: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "-p" and argv[i + 1] in names:
            i += 3
            continue
        out.append(argv[i])
        i += 1
    return out


def cli_int(name: str, value) -> int:
    if value in ("", None):
        return 0
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None


def main(argv=None) -> int:
    try:
        args = parse_args(words_to_options(sys.argv[1:] if argv is None else argv))
        cli = load_stage_cli()
        plans, lacking = plan(args, cli)
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"the Imagewang leaderboard recipe: {recipe.ENTRY}")
    if lacking:
        print(f"note: this {recipe.PRETRAIN['task']} has no {', '.join(lacking)}: the recipe runs without them, "
              f"so it differs from the entry there too")
    for p, argv in plans:
        print(f"\n{p.stage} -> runs/{p.version}/{p.notebook_out.name}\n  python bin/stage.py {shlex.join(argv)}")
        shown = {k: v for k, v in p.parameters.items() if k not in ("runs_dir", "task_params")}
        print("  " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if p.parameters.get("task_params"):
            print("  task_params: " + ", ".join(f"{k}={v}" for k, v in p.parameters["task_params"].items()))
    print(f"\nexpected time (an estimate, not a measurement): {recipe.EXPECTED_TIME}")
    data = plans[0][0].parameters["data"]
    if args.dry_run and awaits_download(data):
        print(f"data: {data} is not in the data folder yet; the run downloads it first (`make data DATA={data}` "
              f"fetches it alone), and checks its images and the disk then")
    if args.dry_run:
        print("dry run: nothing was run")
        return 0
    for p, _ in plans:
        rc = cli.execute(p)
        if rc:
            return rc
    print_leaderboard_line(plans[-1][0])
    return 0


def print_leaderboard_line(plan) -> None:
    from imgwang.stages.compare import read_scraps
    from imgwang.stages.transfer import leaderboard_line, pretrained_on_val

    scraps = read_scraps(plan.notebook_out)
    result = {"val_accs": scraps.get("val_accs", []), "val_acc": scraps.get("val_acc", float("nan")),
              "val_acc_std": scraps.get("val_acc_std", float("nan")),
              "pretrained_on_val": pretrained_on_val(plan.runs_dir, plan.version)}
    print(leaderboard_line(scraps.get("config", plan.parameters), result))


if __name__ == "__main__":
    sys.exit(main())
