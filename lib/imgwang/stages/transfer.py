"""Stage 2: fine-tune an encoder (pretrained or random) on the labelled train set; score val top-1.

The Imagewang protocol: accuracy of the last epoch, no test-time augmentation, mean and std over RUNS
repeats that differ only in their seed. With split "dev" the scoring set is a held-out fifth of train/
(imgwang.data.split) and fine-tuning sees the rest. The batch adapts to small labelled sets
(imgwang.train.batching). Each repeat's classifier is kept for evaluate.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..device import resolve_device
from ..evaluate.metrics import mean_std
from ..evaluate.objective import Classification
from ..models.checkpoint import atomic_torch_save, load_encoder
from ..models.classifier import Classifier
from ..models.encoders import create_encoder
from ..runs import encoder_path, update_stage
from ..train.batching import fit_batch, steps_per_epoch
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
    fit_rows, fit_labels, score_rows, score_labels = sd.labelled(cfg.get("split", "val"))
    objective.check_labels(fit_labels)
    objective.check_labels(score_labels)
    batch, drop_last = fit_batch(len(fit_rows), cfg["bs"])
    steps = steps_per_epoch(len(fit_rows), batch, drop_last)
    print(f"fine-tuning on {len(fit_rows)} labelled images, scoring on {len(score_rows)} ({cfg.get('split', 'val')}): "
          f"batch {batch} (BS={cfg['bs']}), {steps} steps per epoch" + (f", last {len(fit_rows) % batch} images of each shuffled epoch dropped" if drop_last else ""))
    update_stage(run_dir, "transfer", train_bs=batch, steps_per_epoch=steps)
    accs, histories, model = [], [], None
    for r in range(cfg["runs"]):
        seed = cfg["seed"] + r
        tracker = make_tracker(cfg["comet"], run_name=f"{run_dir.name}-transfer-{r}", log_dir=run_dir / "comet")
        tracker.log_params({**cfg, "repeat": r})
        torch.manual_seed(seed)  # the head (and, from none, the encoder) start from weights the seed fixes
        model = build_classifier(cfg["arch"], n_classes, source)
        train = sd.loader(fit_rows, fit_labels, batch_size=batch, device=device, mode="train", seed=seed, drop_last=drop_last)
        val = sd.loader(score_rows, score_labels, batch_size=cfg["bs"], device=device, mode="eval", seed=seed)
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
        atomic_torch_save(model.state_dict(), repeat_classifier_path(run_dir, r))  # evaluate scores every repeat
    atomic_torch_save(model.state_dict(), run_dir / "classifier.pt")  # the last repeat's, for review
    mean, std = mean_std(accs)
    if len(accs) == 1:
        std = math.nan  # one run measures no spread (make compare reads NaN as missing)
    return {"val_accs": accs, "val_acc": mean, "val_acc_std": std, "histories": histories, "train_bs": batch,
            "steps_per_epoch": steps, "model": model, "data": sd, "device": device, "wall_s": time.time() - start}


def repeat_classifier_path(run_dir: Path, repeat: int) -> Path:
    """Where transfer keeps the fine-tuned classifier of one repeat (beside that repeat's checkpoints)."""
    return run_dir / "checkpoints" / f"transfer-{repeat}" / "classifier.pt"


def leaderboard_line(cfg: dict, result: dict) -> str:
    """The result as the Imagewang leaderboard states it, beside the current best entry."""
    from ..data.imagewang import LEADERBOARD_RUNS, leaderboard_entry

    accs = ", ".join(f"{100 * a:.2f}" for a in result["val_accs"])
    std = result["val_acc_std"]
    spread = f" ± {100 * std:.2f} over {len(result['val_accs'])} runs [{accs}]" if not math.isnan(std) else " (1 run)"
    split = cfg.get("split", "val")
    line = (f"{cfg['size']} px, {cfg['epochs']} fine-tuning epochs, {cfg['arch']}, from {cfg['from_version']}: "
            f"{split} top-1 {100 * result['val_acc']:.2f}%{spread}")
    if split != "val":
        return line + f"\n(scored on the {split} split, part of train/: not comparable with the leaderboard, which scores val/)"
    best = leaderboard_entry(cfg["size"], cfg["epochs"])
    if best is None:
        return line + "\n(no leaderboard entry for this size and epoch count)"
    note = "" if cfg["data"].startswith("imagewang") else " (other data: not comparable)"
    runs_needed = LEADERBOARD_RUNS.get(cfg["epochs"])
    if runs_needed and len(result["val_accs"]) != runs_needed:
        note += f" (leaderboard entries average {runs_needed} runs)"
    return line + f"\nleaderboard best at {cfg['size']} px / {cfg['epochs']} epochs: {best:.2f}%{note}"
