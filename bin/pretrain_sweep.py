#!/usr/bin/env python
"""Many short pretraining runs at once on one machine (made for a GPU), each scored by evaluate's kNN: to search a
method's settings on the sample without tuning on val/.

    python bin/pretrain_sweep.py --runs FILE --out results.csv [--jobs 12] [--device cuda]

FILE has one run per line: `name task seed [--lr X] [--bs N] [--epochs N] [-p NAME VALUE ...]` (# starts a
comment). Every run is `make pretrain DATA=sample ARCH=tinyconv SIZE=64 EPOCHS=30` with those changes (the stage's
own run_pretrain, in-process, without the notebook and with the kNN monitor off). Each encoder is then scored as
`make evaluate` scores it (k = 20 cosine neighbours among the sample's train/ images, BatchNorm statistics its
own) on two query sets:
  knn_tune  3,000 images (300 per val class; --tune-per-class) drawn from another generator seed: never in the
            sample, so the search tunes on them, not on val/ (with ten times val/'s images, a third of its noise);
  knn_val   the sample's val/: evaluate's knn_acc, for reading beside the done-when figures only.
The random-init encoder of each seed (BatchNorm statistics estimated on train/, as evaluate's reference) is scored
the same way. Rows go to the CSV as runs finish; a table of the means per setting is printed at the end.
Every run's configuration is resolved before any compute: a bad line or value stops with one `error:` line, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import shlex
import signal
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

from imgwang.core.device import resolve_device
from imgwang.core.errors import ImgwangError
from imgwang.data.sample import make_sample
from imgwang.evaluate.bn_stats import data_bn_stats
from imgwang.evaluate.features import extract_features
from imgwang.evaluate.knn import knn_accuracy
from imgwang.models.checkpoint import kept_encoder
from imgwang.spec import STAGES
from imgwang.stages.evaluate import frozen_encoders
from imgwang.stages.pretrain import run_pretrain
from imgwang.stages.resolve import parse_value, resolve
from imgwang.stages.stage_data import load_stage_data
from imgwang.train.collapse import collapse_scraps

BASE = dict(data="sample", arch="tinyconv", size=64, epochs=30, comet="off", knn_every=0, threads=1)
TUNE_SEED = 7  # the tuning draw's generator seed (the sample's is 0)


class BadLine(ImgwangError):
    pass


def parse_runs(text: str) -> list[dict]:
    runs = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) < 3 or not words[2].isdigit():
            raise BadLine(f"{line!r}: a run line starts with a name, a task and a seed")
        name, task, seed, rest = words[0], words[1], int(words[2]), words[3:]
        given, params, i = {}, {}, 0
        while i < len(rest):
            if rest[i] == "-p" and i + 2 < len(rest):
                params[rest[i + 1]] = parse_value(rest[i + 2])  # as bin/stage.py reads -p values
                i += 3
            elif rest[i] in ("--lr", "--bs", "--epochs") and i + 1 < len(rest):
                number = float if rest[i] == "--lr" else int
                try:
                    given[rest[i][2:]] = number(rest[i + 1])
                except ValueError:
                    raise BadLine(f"{line!r}: {rest[i]} takes a number, got {rest[i + 1]!r}") from None
                i += 2
            else:
                raise BadLine(f"{line!r}: unknown word {rest[i]!r} (options: --lr, --bs, --epochs, -p NAME VALUE)")
        runs.append(dict(name=name, task=task, seed=seed, given=given, params=params,
                         setting=" ".join(words[3:]) or "default"))
    return runs


def query_sets(sd, tune_root: Path, device):
    """(a loader of the sample's train/ images, the kNN's memory; {set name: query loader}) for StageData `sd`."""
    tune = load_stage_data(str(tune_root), sd.size, progress=False)
    if list(tune.classes) != list(sd.classes):
        raise ImgwangError("the tuning draw's classes differ from the sample's")
    fit_rows, fit_labels, val_rows, val_labels = sd.labelled("val")
    _, _, tune_rows, tune_labels = tune.labelled("val")
    bank = sd.loader(fit_rows, fit_labels, batch_size=256, device=device, mode="eval")
    queries = {"knn_val": sd.loader(val_rows, val_labels, batch_size=256, device=device, mode="eval"),
               "knn_tune": tune.loader(tune_rows, tune_labels, batch_size=256, device=device, mode="eval")}
    return bank, queries


def scores(encoder, bank, queries, device, n_classes) -> dict:
    encoder.to(device).eval()
    tf, tl, _ = extract_features(encoder, bank, device)
    out = {}
    for name, loader in queries.items():
        qf, ql, _ = extract_features(encoder, loader, device)
        out[name] = knn_accuracy(tf, tl, qf, ql, n_classes=n_classes)
    return out


def config(run: dict, device: str) -> dict:
    """The run's resolved pretraining configuration (a bad value raises ConfigError)."""
    spec = STAGES["pretrain"]  # -p names one of the stage's options, else a task parameter (as bin/stage.py)
    stage_opts = {k: v for k, v in run["params"].items() if spec.param(k) is not None}
    task_params = {k: v for k, v in run["params"].items() if spec.param(k) is None}
    return resolve("pretrain", dict(BASE, task=run["task"], task_params=task_params, seed=run["seed"], device=device,
                                    **run["given"], **stage_opts))


def die_with_parent() -> None:
    """Pool initializer: a worker gets SIGTERM when the sweep's process dies (killed, or stopped by `timeout`), so no
    run goes on alone holding a core (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def one_run(run: dict, runs_dir: str, tune_root: str, device: str) -> dict:
    torch.set_num_threads(1)
    run_dir = Path(runs_dir) / run["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = config(run, device)
    start = time.time()
    with open(run_dir / "log.txt", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print("config:", cfg, flush=True)
        result = run_pretrain(cfg, run_dir)
        bank, queries = query_sets(result["data"], Path(tune_root), result["device"])
        # the encoder run_pretrain saved as encoder.pt, still in memory
        got = scores(kept_encoder(result["model"]), bank, queries, result["device"], len(result["data"].classes))
    last = result["history"][-1]
    return {"name": run["name"], "task": run["task"], "seed": run["seed"], "setting": run["setting"], **got,
            "train_loss": last["train_loss"], "pair_acc": result["val_metric"], "chance": result["chance"],
            "embedding_std": collapse_scraps(result["history"]).get("embedding_std"),
            "wall_s": round(time.time() - start, 1)}


def random_references(seeds, tune_root: Path, device) -> dict:
    """{seed: scores} of evaluate's random-init reference: its encoder, BatchNorm statistics from train/."""
    sd = load_stage_data(BASE["data"], BASE["size"], progress=False)
    bank, queries = query_sets(sd, tune_root, device)
    refs = {}
    for seed in sorted(seeds):
        encoder = frozen_encoders(dict(BASE, seed=seed, from_version="none"), runs_dir=None)["random"].to(device)
        data_bn_stats(encoder, sd, sd.train_rows, 64, device, seed=seed)
        refs[seed] = scores(encoder, bank, queries, device, len(sd.classes))
    return refs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="the file of runs, one per line")
    p.add_argument("--out", required=True, help="CSV of results, a row per finished run")
    p.add_argument("--runs-dir", default="/tmp/pretrain_sweep")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--tune-per-class", type=int, default=300, help="tuning images for each val class")
    args = p.parse_args(argv)
    try:
        device = str(resolve_device(args.device))
        runs = parse_runs(Path(args.runs).read_text())
        names = [r["name"] for r in runs]
        if len(set(names)) != len(names):
            raise BadLine("two runs have the same name (each writes its own folder)")
        for run in runs:
            config(run, device)
    except (ImgwangError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tune_root = Path(args.runs_dir) / "tune-draw"
    make_sample(tune_root, seed=TUNE_SEED, n_train=1, n_unsup=0, n_val=args.tune_per_class)
    refs = random_references({r["seed"] for r in runs}, tune_root, device)
    print("random init:", {s: {k: round(100 * v, 2) for k, v in r.items()} for s, r in refs.items()}, flush=True)
    fields = ["name", "task", "seed", "setting", "knn_tune", "knn_val", "random_tune", "random_val", "train_loss",
              "pair_acc", "chance", "embedding_std", "wall_s"]
    rows = []
    with open(args.out, "w", newline="") as f, ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"),
                                                              initializer=die_with_parent) as pool:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        futures = {pool.submit(one_run, r, args.runs_dir, str(tune_root), device): r for r in runs}
        for fut in as_completed(futures):
            run = futures[fut]
            try:
                row = fut.result()
            except Exception as e:  # one failed setting must not stop the others
                print(f"failed: {run['name']}: {type(e).__name__}: {e}", flush=True)
                continue
            row.update(random_tune=refs[row["seed"]]["knn_tune"], random_val=refs[row["seed"]]["knn_val"])
            rows.append(row)
            writer.writerow(row)
            f.flush()
            print(f"{row['name']:>12} {row['task']:6} s{row['seed']} tune {100 * row['knn_tune']:5.2f} "
                  f"(random {100 * row['random_tune']:5.2f}) val {100 * row['knn_val']:5.2f} loss {row['train_loss']:.3f} "
                  f"{row['wall_s']:.0f}s  {row['setting']}", flush=True)
    print_means(rows)
    return 0


def print_means(rows: list[dict]) -> None:
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["setting"]), []).append(r)
    print("\n| task | setting | seeds | knn_tune mean (sd) | margin over random init (tune) | knn_val mean |")
    print("|---|---|---|---|---|---|")
    order = sorted(groups.items(), key=lambda kv: -statistics.mean(r["knn_tune"] - r["random_tune"] for r in kv[1]))
    for (task, setting), rs in order:
        tune = [100 * r["knn_tune"] for r in rs]
        sd = f" ({statistics.stdev(tune):.2f})" if len(tune) > 1 else ""
        margin = statistics.mean(100 * (r["knn_tune"] - r["random_tune"]) for r in rs)
        print(f"| {task} | {setting} | {len(rs)} | {statistics.mean(tune):.2f}{sd} | {margin:+.2f} | "
              f"{statistics.mean(100 * r['knn_val'] for r in rs):.2f} |")


if __name__ == "__main__":
    sys.exit(main())
