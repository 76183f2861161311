#!/usr/bin/env python
"""`make sweep`: one pipeline per grid point and seed, the baseline shared (imgwang.stages.sweep).

    python bin/sweep.py TASK=patchwork DATA=sample "SWEEP=patch_frac=0.25,0.5 pct_pos=0.5,0.7" SEEDS=2 RUNS=3
    python bin/sweep.py ... DRY=1        the plan, one line per run (POINT=i runs run i alone)

Every check runs before any compute and ends in one line on stderr with exit code 2; runs/ stays as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

from imgwang.core.errors import ImgwangError
from imgwang.spec import SWEEP_VARS, make_vars
from imgwang.stages.plan import truthy
from imgwang.stages.sweep import describe, plan_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> tuple[dict, list[tuple[str, str]], Path]:
    """NAME=value words (the stage's Make variables and the sweep's), -p NAME VALUE pairs, --runs-dir DIR."""
    known = {v.name for v in make_vars()} | {v.name for v in SWEEP_VARS}
    words, p_pairs, runs_dir, i = {}, [], REPO / "runs", 0
    while i < len(argv):
        word = argv[i]
        if word == "-p" and len(argv) >= i + 3:
            p_pairs.append((argv[i + 1], argv[i + 2]))
            i += 3
            continue
        if word == "--runs-dir" and i + 1 < len(argv):
            runs_dir = Path(argv[i + 1])
            i += 2
            continue
        name, eq, value = word.partition("=")
        if not eq or name not in known:
            raise ImgwangError(f"unknown word {word!r}; variables: {', '.join(sorted(known))}, P")
        words[name] = value
        i += 1
    return words, p_pairs, runs_dir


def main(argv=None) -> int:
    try:
        words, p_pairs, runs_dir = parse(sys.argv[1:] if argv is None else argv)
        sweep_words = {v.name: words.pop(v.name, "") for v in SWEEP_VARS}
        jobs = int(sweep_words["JOBS"] or 1)
        if jobs < 1:
            raise ImgwangError(f"JOBS={sweep_words['JOBS']} must be a whole number >= 1")
        only = int(sweep_words["POINT"]) if sweep_words["POINT"] != "" else None
        if only is not None and not words.get("VERSION"):
            raise ImgwangError(f"POINT={only} needs VERSION=<sweep name>: every task of an array names the same sweep")
        sweep = plan_sweep({**words, "SWEEP": sweep_words["SWEEP"]}, p_pairs, runs_dir, only)
    except ValueError as e:
        print(f"error: JOBS and POINT are whole numbers ({e})", file=sys.stderr)
        return 2
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if truthy(sweep_words["DRY"]):
        print("\n".join(describe(sweep, runs_dir)))
        return 0
    try:  # fetched or generated once here: JOBS units starting together would each make it, over each other
        from imgwang.data.resolve import resolve_data
        from imgwang.spec import STAGES

        resolve_data(words.get("DATA") or STAGES["pretrain"].defaults()["data"])
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_sweep(sweep, runs_dir, [sys.executable, str(REPO / "bin" / "stage.py")], jobs=jobs, only=only)


if __name__ == "__main__":
    sys.exit(main())
