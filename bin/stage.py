#!/usr/bin/env python
"""Run one stage (or the whole pipeline) of a version: check everything, then execute its notebook.
This script turns words into options; imgwang.stages.driver does the rest.

    python bin/stage.py pretrain --version v8 --task patchwork --data sample -p pct_pos 0.7
    python bin/stage.py pretrain VERSION=v8 TASK=patchwork DATA=sample -p pct_pos 0.7   (what make passes)

Every check runs before any compute and ends in one line on stderr with exit code 2; runs/ stays as it
was. The executed notebook goes to runs/<version>/, run.json records the parameters and each stage's
status (running, done, failed, interrupted). Ctrl-C or SIGTERM is passed on to the notebook's kernel
(imgwang.stages.kernel), so training stops after saving its last complete epoch; RESUME=1 continues from there.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from imgwang.core.errors import ConfigError
from imgwang.spec import STAGES, make_vars, option_name
from imgwang.stages import driver
from imgwang.stages.kernel import log_cell_output

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
    return driver.run(args, REPO)


if __name__ == "__main__":
    sys.exit(main())
