#!/usr/bin/env python
"""The random-init reference with its BatchNorm statistics untouched against estimated on the data, as evaluate
scores it (docs/results.md, "BatchNorm statistics of random-init references").

    python bin/bn_reference.py --data sample --arch tinyconv --size 64 --seeds 0 1 2

For each seed: evaluate's random-init encoder of that seed (stages.evaluate.frozen_encoders), its features on
train/ and val/ with the statistics a new BatchNorm holds (mean 0, variance 1), then with them estimated on the
fitting set (evaluate.bn_stats.data_bn_stats, what evaluate does), each scored by evaluate's kNN and linear probe
(stages.evaluate.frozen_scores). Prints one row per seed and setting.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from imgwang.core.errors import ImgwangError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="sample")
    p.add_argument("--arch", default="tinyconv")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--bs", type=int, default=64)
    args = p.parse_args(argv)
    try:
        rows = measure(args.data, args.arch, args.size, args.seeds, args.bs)
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'seed':>4}  {'BatchNorm statistics':22} {'kNN':>7} {'probe':>7}  probe L2")
    for row in rows:
        print(f"{row['seed']:>4}  {row['statistics']:22} {row['knn_acc']:7.2%} {row['linear_acc']:7.2%}  {row['linear_wd']:.1e}")
    return 0


def measure(data: str, arch: str, size: int, seeds, bs: int = 64) -> list[dict]:
    """One row per seed and setting ("untouched", "estimated"): evaluate's kNN and probe of the random encoder."""
    from imgwang.core.device import resolve_device
    from imgwang.evaluate.bn_stats import data_bn_stats
    from imgwang.evaluate.features import extract_features
    from imgwang.models.encoders import encoder_problem
    from imgwang.stages.evaluate import frozen_encoders, frozen_scores
    from imgwang.stages.stage_data import load_stage_data

    if problem := encoder_problem(arch, size):
        raise ImgwangError(problem)
    device = resolve_device("auto")
    sd = load_stage_data(data, size)
    fit_rows, fit_labels, score_rows, score_labels = sd.labelled("val")
    train = sd.loader(fit_rows, fit_labels, batch_size=bs, device=device, mode="eval")
    val = sd.loader(score_rows, score_labels, batch_size=bs, device=device, mode="eval")
    rows = []
    for seed in seeds:
        cfg = {"arch": arch, "size": size, "seed": seed, "from_version": "none"}
        encoder = frozen_encoders(cfg, Path("."))["random"].to(device).eval()
        for statistics in ("untouched", "estimated"):
            if statistics == "estimated":
                data_bn_stats(encoder, sd, fit_rows, bs, device, seed=seed)
            tf, tl, _ = extract_features(encoder, train, device)
            vf, vl, _ = extract_features(encoder, val, device)
            with contextlib.redirect_stdout(io.StringIO()):  # evaluate's own lines: the table says it
                scores = frozen_scores(cfg, tf, tl, vf, vl, len(sd.classes))
            rows.append({"seed": seed, "statistics": statistics, **scores})
    return rows


if __name__ == "__main__":
    sys.exit(main())
