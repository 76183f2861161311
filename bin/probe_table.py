#!/usr/bin/env python
"""The linear probe on one run's frozen features: the L2 strength chosen by cross-validation on train
against the earlier fixed probe (AdamW, weight decay 1e-4, 100 epochs), on all train labels and on a few
per class.

    python bin/probe_table.py --version pe-simclr --per-class 0 5 10

For reference it also prints every strength's val accuracy; that row is for reading only (choosing on it
would be choosing on val). Features come from the run's encoder exactly as `make evaluate` extracts them.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imgwang.core.device import resolve_device
from imgwang.evaluate.features import extract_features
from imgwang.evaluate.linear_probe import WD_GRID, _path, linear_probe
from imgwang.models.checkpoint import load_encoder
from imgwang.models.encoders import create_encoder
from imgwang.runs import encoder_path, read_run_json
from imgwang.stages.stage_data import load_stage_data

REPO = Path(__file__).resolve().parents[1]


def adamw_probe(xt, yt, xv, yv, n_classes: int, weight_decay: float = 1e-4, epochs: int = 100, lr: float = 0.1,
                batch_size: int = 1024, seed: int = 0) -> float:
    """The probe imgwang used before cross-validation: AdamW from zero on standardised features, cosine
    schedule, val accuracy after the last epoch."""
    xt, xv = torch.as_tensor(xt).float(), torch.as_tensor(xv).float()
    yt, yv = torch.as_tensor(yt).long(), torch.as_tensor(yv).long()
    mean, std = xt.mean(0), xt.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    xt, xv = (xt - mean) / std, (xv - mean) / std
    layer = torch.nn.Linear(xt.shape[1], n_classes)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps = math.ceil(len(xt) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = F.cross_entropy(layer(xt[rows]), yt[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return (layer(xv).argmax(1) == yv).float().mean().item()


def few_per_class(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Positions of k labelled images per class (all when k is 0), drawn with a fixed seed."""
    if k <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c in np.unique(labels)]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", required=True, help="a run with encoder.pt (its pretraining config gives data, size, arch)")
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--per-class", type=int, nargs="+", default=[0, 10], help="train labels per class; 0: all")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir)
    cfg = read_run_json(runs_dir / args.version)["stages"]["pretrain"]["config"]
    device = resolve_device(args.device)
    sd = load_stage_data(cfg["data"], cfg["size"], progress=False)
    n_classes = len(sd.classes)
    encoder = create_encoder(cfg["arch"])
    load_encoder(encoder, encoder_path(runs_dir, args.version))
    encoder.to(device)
    loaders = [sd.loader(r, y, batch_size=64, device=device, mode="eval") for r, y in
               ((sd.train_rows, sd.train_labels), (sd.val_rows, sd.val_labels))]
    (xt, yt, _), (xv, yv, _) = (extract_features(encoder, loader, device) for loader in loaders)
    xt, yt, xv, yv = xt.numpy(), yt.numpy(), xv.numpy(), yv.numpy()
    print(f"{args.version}: {cfg['task']} {cfg['arch']} {cfg['size']} px, {xt.shape[1]} features, "
          f"{len(yt)} train / {len(yv)} val images")
    print("| train labels | AdamW wd 1e-4 (before) | CV probe: chosen λ | CV acc | val acc | val acc per λ (reading only) |")
    print("|---|---|---|---|---|---|")
    for k in args.per_class:
        rows = few_per_class(yt, k)
        before = adamw_probe(xt[rows], yt[rows], xv, yv, n_classes)
        cv = linear_probe(xt[rows], yt[rows], xv, yv, n_classes)
        per_wd = " ".join(f"{wd:.0e}:{100 * (f.predict(xv) == yv).mean():.1f}"
                          for wd, f in _path(xt[rows], yt[rows], sorted(WD_GRID, reverse=True)))
        print(f"| {len(rows)} ({'all' if k <= 0 else k} per class) | {100 * before:.2f} | {cv['wd']:.1e} | "
              f"{100 * cv['cv_acc']:.2f} ± {100 * cv['cv_std']:.2f} ({cv['folds']} folds) | {100 * cv['acc']:.2f} | {per_wd} |",
              flush=True)


if __name__ == "__main__":
    main()
