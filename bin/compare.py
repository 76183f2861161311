#!/usr/bin/env python
"""`make compare`: print the finished versions (and groups of pretraining replicates, and sweeps) in the few
columns a person reads (stages/readable.py), one line per version that did not finish, a verdict per pretrained
entry; write every column to runs/compare.csv, and execute 05-compare into runs/05-compare.ipynb (the same
table with learning curves, pretext vs transfer and each sweep's plots)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgwang.runs import COMPARE_NOTEBOOK
from imgwang.stages.compare import baseline_verdicts, write_compare
from imgwang.stages.readable import readable_table

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--no-notebook", action="store_true", help="only the table and the CSV")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    table, path = write_compare(runs_dir)
    shown, unfinished = readable_table(table)
    print(shown.to_string() if len(shown) else "(no finished runs yet)")
    for line in unfinished:
        print(f"not finished: {line}")
    verdicts = baseline_verdicts(table)
    if verdicts:
        print("\ndid pretraining help? (fine-tuned accuracy against the newest FROM=none run fine-tuned alike: "
              "difference, 95% CI, Welch's p; when several share one baseline, Holm-adjusted CI and p decide)")
        print("\n".join(f"  {line}" for line in verdicts))
    print(f"\nwritten: {path}")
    if not args.no_notebook and len(table):
        from imgwang.stages.kernel import run_notebook

        out = runs_dir / COMPARE_NOTEBOOK
        outcome = run_notebook(REPO / "notebooks" / COMPARE_NOTEBOOK, out, {"runs_dir": str(runs_dir)}, cwd=REPO)
        if not outcome.ok:
            print(f"error: {out} {outcome.status} ({outcome.error})", file=sys.stderr)
            return outcome.exit_code
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
