#!/usr/bin/env python
"""What the nearest neighbours of pretrained encoders share: the class, or colour and brightness?
(imgwang.evaluate.shortcuts says what each column measures.)

    python bin/neighbour_shortcuts.py --version g3-simclr g3-byol --runs-dir runs

Each version's pretraining config gives the data, arch and size (all versions must share them); a random-init
encoder of that arch, its BatchNorm statistics estimated as evaluate's reference's, is the first row. Features
are extracted as `make evaluate` extracts them (fitting set: train, scoring set: val).

On the generated sample a second table says which of the image's own random draws the neighbours share
(imgwang.data.sample.NUISANCES, drawn again from each image's seed): for each, the mean distance from a scoring
image to its k neighbours over its mean distance to every training image (1: the neighbours share it no more than
any image does; 0: they all have the scoring image's value).

A last table says how many directions each space uses (RankMe) and what its two main directions follow: their
share of the variance, the share of that between classes, and (on the sample) the nuisance each follows most
(imgwang.evaluate.directions), on the fitting set's features.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from imgwang.core.errors import ImgwangError
from imgwang.data import sample
from imgwang.evaluate.bn_stats import data_bn_stats
from imgwang.evaluate.directions import main_directions, rankme
from imgwang.evaluate.features import extract_features
from imgwang.evaluate.knn import knn_accuracy
from imgwang.evaluate.neighbours import nearest
from imgwang.evaluate.shortcuts import K, image_statistics, neighbour_overlap, same_class_share, statistic_ratio
from imgwang.models.checkpoint import load_encoder
from imgwang.models.encoders import create_encoder
from imgwang.runs import encoder_path, recorded_config
from imgwang.stages.stage_data import load_stage_data

REPO = Path(__file__).resolve().parents[1]


def images_of(loader) -> torch.Tensor:
    return torch.cat([batch.images.float() for batch in loader])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", nargs="+", required=True, help="runs with encoder.pt, pretrained on the same data")
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir)
    try:
        paths = {v: encoder_path(runs_dir, v) for v in args.version}
        cfgs = {v: recorded_config(runs_dir / v, "pretrain") for v in args.version}
        settings = {(c.get("data"), c.get("arch"), c.get("size")) for c in cfgs.values()}
        if len(settings) != 1 or None in next(iter(settings)):
            raise ImgwangError(f"the versions must be pretrained on the same data, arch and size, got {sorted(map(str, settings))}")
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data, arch, size = next(iter(settings))
    sd = load_stage_data(data, size, progress=False)
    fit_rows, fit_labels, score_rows, score_labels = sd.labelled("val")
    train = sd.loader(fit_rows, fit_labels, batch_size=64, device="cpu", mode="eval")
    val = sd.loader(score_rows, score_labels, batch_size=64, device="cpu", mode="eval")
    train_stats, val_stats = image_statistics(images_of(train)), image_statistics(images_of(val))

    def encoder(version: str | None):
        torch.manual_seed(args.seed)
        enc = create_encoder(arch, size)
        if version is None:
            data_bn_stats(enc, sd, fit_rows, 64, "cpu", seed=args.seed)
        else:
            load_encoder(enc, paths[version])
        return enc.eval()

    print(f"{data}, {arch}, {size} px: {len(fit_rows)} train / {len(score_rows)} val images, k = {K} cosine neighbours")
    print("| encoder | task | kNN | same-class share | colour-statistic ratio | overlap with random init |")
    print("|---|---|---|---|---|---|")
    reference, neighbours, spaces = None, {}, {}
    for version in [None, *args.version]:
        enc = encoder(version)
        (tf, tl, _), (vf, vl, _) = extract_features(enc, train, "cpu"), extract_features(enc, val, "cpu")
        idx = nearest(tf, vf, K)
        reference = idx if reference is None else reference
        neighbours[version or "random init"] = idx
        spaces[version or "random init"] = tf
        knn = knn_accuracy(tf, tl, vf, vl, n_classes=len(sd.classes))
        task = "-" if version is None else cfgs[version].get("task", "?")
        print(f"| {version or 'random init'} | {task} | {100 * knn:.2f}% | {same_class_share(tl, vl, idx):.3f} | "
              f"{statistic_ratio(train_stats, val_stats, idx):.2f} | {neighbour_overlap(reference, idx):.2f} |", flush=True)
    generated = sample.is_generated(sd.root)
    if generated:
        print_shared_nuisances(sd, fit_rows, score_rows, neighbours)
    print_main_directions(spaces, fit_labels, nuisance_values(sd, fit_rows) if generated else None)
    return 0


def nuisance_values(sd, rows) -> torch.Tensor:
    """(len(rows), len(NUISANCES)): each generated image's own random draws, drawn again from its seed."""
    scenes = [sample.nuisance_values(sample.scene_of(sd.root, sd.cache.paths[r])[1]) for r in rows]
    return torch.tensor([[s[name] for name in sample.NUISANCES] for s in scenes], dtype=torch.float64)


def print_main_directions(spaces: dict, labels, values: torch.Tensor | None) -> None:
    factors = {} if values is None else {name: values[:, j] for j, name in enumerate(sample.NUISANCES)}
    print("\nHow many directions each space uses (RankMe) and what its two main directions follow "
          "(share of the variance; of that, share between classes" + ("; the nuisance it follows most, |r|)" if factors else ")"))
    print("| encoder | RankMe | direction 1 | direction 2 |")
    print("|---|---|---|---|")
    for name, features in spaces.items():
        cells = []
        for d in main_directions(features, labels, factors):
            cell = f"{d['variance_share']:.2f}; class {d['class_share']:.2f}"
            if d["factors"]:
                top, r = max(d["factors"].items(), key=lambda item: item[1])
                cell += f"; {top.replace('_', ' ')} {r:.2f}"
            cells.append(cell)
        print(f"| {name} | {rankme(features):.1f} | " + " | ".join(cells) + " |", flush=True)


def print_shared_nuisances(sd, fit_rows, score_rows, neighbours: dict) -> None:
    train_values, val_values = nuisance_values(sd, fit_rows), nuisance_values(sd, score_rows)
    print("\nWhat the neighbours share of each image's random draws (1: no more than any image; 0: the same value)")
    print("| encoder | " + " | ".join(name.replace("_", " ") for name in sample.NUISANCES) + " |")
    print("|---|" + "---|" * len(sample.NUISANCES))
    for name, idx in neighbours.items():
        ratios = [statistic_ratio(train_values[:, j:j + 1], val_values[:, j:j + 1], idx) for j in range(len(sample.NUISANCES))]
        print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
