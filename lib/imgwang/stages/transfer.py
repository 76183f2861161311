"""Stage 2: fine-tune an encoder (pretrained or random) on the labelled train set; score val top-1.

The Imagewang protocol: accuracy of the last epoch, no test-time augmentation, mean and std over RUNS
repeats that differ only in their seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..device import resolve_device
from ..evaluate.metrics import mean_std
from ..evaluate.objective import Classification
from ..models.checkpoint import atomic_torch_save, load_encoder
from ..models.classifier import Classifier
from ..models.encoders import create_encoder
from ..runs import encoder_path
from ..train.loop import fit
from ..train.tracking import make_tracker
from .data import load_stage_data


def build_classifier(arch: str, n_classes: int, encoder_file: Path | None) -> Classifier:
    encoder = create_encoder(arch)
    if encoder_file is not None:
        load_encoder(encoder, encoder_file)
    return Classifier(encoder, n_classes)


def run_transfer(cfg: dict, run_dir: Path, runs_dir: Path) -> dict:
    start = time.time()
    device = resolve_device(cfg["device"])
    source = None if cfg["from_version"] == "none" else encoder_path(runs_dir, cfg["from_version"])
    sd = load_stage_data(cfg["data"], cfg["size"])
    n_classes = len(sd.classes)
    objective = Classification(n_classes)
    objective.check_labels(sd.train_labels)
    objective.check_labels(sd.val_labels)
    accs, histories, model = [], [], None
    for r in range(cfg["runs"]):
        seed = cfg["seed"] + r
        tracker = make_tracker(cfg["comet"], run_name=f"{run_dir.name}-transfer-{r}", log_dir=run_dir / "comet")
        tracker.log_params({**cfg, "repeat": r})
        torch.manual_seed(seed)  # the head (and, from none, the encoder) start from weights the seed fixes
        model = build_classifier(cfg["arch"], n_classes, source)
        train = sd.loader(sd.train_rows, sd.train_labels, batch_size=cfg["bs"], device=device, mode="train", seed=seed)
        val = sd.loader(sd.val_rows, sd.val_labels, batch_size=cfg["bs"], device=device, mode="eval", seed=seed)
        print(f"repeat {r + 1}/{cfg['runs']} (seed {seed})")
        try:
            history = fit(
                model, objective, train, val, epochs=cfg["epochs"], lr=cfg["lr"], device=device, seed=seed,
                freeze_epochs=cfg.get("freeze_epochs", 0), head_lr_mult=cfg.get("head_lr_mult", 1.0),
                checkpoint_dir=run_dir / "checkpoints" / f"transfer-{r}", resume=cfg.get("resume", False),
                tracker=tracker,
            )
        finally:
            tracker.end()
        histories.append(history)
        accs.append(float(history[-1]["val_accuracy"]))
    atomic_torch_save(model.state_dict(), run_dir / "classifier.pt")
    mean, std = mean_std(accs)
    return {"val_accs": accs, "val_acc": mean, "val_acc_std": std, "histories": histories,
            "model": model, "data": sd, "device": device, "wall_s": time.time() - start}


def transfer_scraps(cfg: dict, result: dict) -> dict:
    """What 02-transfer glues for evaluate and `make compare` (figures apart)."""
    return {
        "config": cfg, "from_version": cfg["from_version"], "val_acc": result["val_acc"],
        "val_acc_std": result["val_acc_std"], "val_accs": result["val_accs"], "transfer_history": result["histories"][0],
        "transfer_histories": result["histories"], "transfer_wall_s": result["wall_s"],
    }


def leaderboard_line(cfg: dict, result: dict) -> str:
    """The result as the Imagewang leaderboard states it, beside the current best entry."""
    from ..data.imagewang import LEADERBOARD_RUNS, leaderboard_entry

    accs = ", ".join(f"{100 * a:.2f}" for a in result["val_accs"])
    line = (f"{cfg['size']} px, {cfg['epochs']} epochs, {cfg['arch']}, from {cfg['from_version']}: "
            f"val top-1 {100 * result['val_acc']:.2f}% ± {100 * result['val_acc_std']:.2f} over {len(result['val_accs'])} run(s) [{accs}]")
    best = leaderboard_entry(cfg["size"], cfg["epochs"])
    if best is None:
        return line + "\n(no leaderboard entry for this size and epoch count)"
    note = "" if cfg["data"].startswith("imagewang") else " (other data: not comparable)"
    runs_needed = LEADERBOARD_RUNS.get(cfg["epochs"])
    if runs_needed and len(result["val_accs"]) != runs_needed:
        note += f" (leaderboard entries average {runs_needed} runs)"
    return line + f"\nleaderboard best at {cfg['size']} px / {cfg['epochs']} epochs: {best:.2f}%{note}"
