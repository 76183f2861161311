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

from ..core import atomic
from ..core.device import resolve_device
from ..data import loader_augment
from ..distributed import launch, world
from ..evaluate.metrics import mean_std
from ..evaluate.objective import Classification
from ..models.checkpoint import load_encoder
from ..models.classifier import Classifier
from ..models.encoders import create_encoder
from ..runs import encoder_path, recorded_config, update_stage
from ..spec import STAGES
from ..train.batching import fit_batch, steps_per_epoch
from ..train.loop import fit
from ..train.settings import FitSettings
from ..train.tracking import make_tracker
from .pretrain import record_world
from .stage_data import load_stage_data


def build_classifier(arch: str, n_classes: int, encoder_file: Path | None, head_dropout: float = 0.25,
                     img_size: int | None = None) -> Classifier:
    encoder = create_encoder(arch, img_size)
    if encoder_file is not None:
        load_encoder(encoder, encoder_file)
    return Classifier(encoder, n_classes, dropout=head_dropout)


def pretrained_on_val(runs_dir: Path, from_version: str) -> bool | None:
    """Whether the encoder loaded from FROM saw val/ images (unlabelled) while pretraining; None from none."""
    if from_version == "none":
        return None
    recorded = recorded_config(Path(runs_dir) / from_version, "pretrain")
    return bool(recorded.get("pretrain_on_val", False))


def size_note(runs_dir: Path, from_version: str, size: int) -> str | None:
    """A line when FROM's encoder was pretrained at another image size than this fine-tuning's. Each stage takes
    SIZE from its own command line or the data's default, not from the version: `make pretrain SIZE=64` on a
    folder (whose default is 128) followed by `make transfer` fine-tunes at 128 px. Said, not changed, since a
    different size can be meant (and a FROM=none baseline has no pretraining size to follow)."""
    if from_version == "none":
        return None
    pretrained = recorded_config(Path(runs_dir) / from_version, "pretrain").get("size")
    if not pretrained or int(pretrained) == int(size):
        return None
    return (f"note: {from_version}'s encoder was pretrained at {pretrained} px and fine-tunes here at {size} px; "
            f"SIZE={pretrained} fine-tunes at its pretraining size")


def run_transfer(cfg: dict, run_dir: Path, runs_dir: Path) -> dict:
    """Fine-tune RUNS times from FROM's encoder (or none); `cfg` is resolved (imgwang.stages.resolve)."""
    if launch.wanted(cfg):
        return transfer_on_ranks(cfg, run_dir, runs_dir)
    start = time.time()
    device = world.local_device(resolve_device(cfg["device"]))
    lead = world.is_rank_zero()  # under torchrun: rank 0 loads the encoder (DDP copies its weights), tracks, writes
    source = None if cfg["from_version"] == "none" or not lead else encoder_path(runs_dir, cfg["from_version"])
    if lead and (note := size_note(runs_dir, cfg["from_version"], cfg["size"])):
        print(note)
    sd = load_stage_data(cfg["data"], cfg["size"], progress=lead)
    n_classes = len(sd.classes)
    objective = Classification(n_classes, label_smoothing=cfg["label_smoothing"])
    fit_rows, fit_labels, score_rows, score_labels = sd.labelled(cfg.get("split") or "val")
    objective.check_labels(fit_labels)
    objective.check_labels(score_labels)
    batch, drop_last, steps = fitted_batch(cfg, len(fit_rows), len(score_rows), run_dir if lead else None)
    accs, histories, model = [], [], None
    for r in range(cfg["runs"]):
        seed = cfg["seed"] + r
        tracker = make_tracker(cfg["comet"] if lead else "off", run_name=f"{run_dir.name}-transfer-{r}", log_dir=run_dir / "comet")
        tracker.log_params({**cfg, "repeat": r})
        torch.manual_seed(seed)  # the head (and, from none, the encoder) start from weights the seed fixes
        model = build_classifier(cfg["arch"], n_classes, source, cfg["head_dropout"], cfg["size"])
        train = sd.loader(fit_rows, fit_labels, batch_size=batch, device=device, mode="train", seed=seed,
                          drop_last=drop_last, shard=world.shard(), augment=loader_augment.chosen(cfg))
        val = sd.loader(score_rows, score_labels, batch_size=cfg["bs"], device=device, mode="eval", seed=seed)
        if lead:
            print(f"repeat {r + 1}/{cfg['runs']} (seed {seed})")
        try:
            settings = FitSettings.of(cfg, device=device, seed=seed, checkpoint_dir=run_dir / "checkpoints" / f"transfer-{r}")
            history = fit(model, objective, train, val, settings, tracker=tracker)
        finally:
            tracker.end()
        histories.append(history)
        accs.append(float(history[-1]["val_accuracy"]))
        if lead:
            atomic.torch_save(model.state_dict(), repeat_classifier_path(run_dir, r))  # evaluate scores every repeat
    if lead:
        atomic.torch_save(model.state_dict(), run_dir / "classifier.pt")  # the last repeat's, for review
        if not world.in_torchrun():
            record_world(run_dir, "transfer", world.current().record(batch // world.world_size()))
    mean, std = mean_std(accs)
    if len(accs) == 1:
        std = math.nan  # one run measures no spread (make compare reads NaN as missing)
    return {"val_accs": accs, "val_acc": mean, "val_acc_std": std, "histories": histories, "train_bs": batch,
            "steps_per_epoch": steps, "pretrained_on_val": pretrained_on_val(runs_dir, cfg["from_version"]),
            "model": model, "data": sd, "device": device, "wall_s": time.time() - start}


def transfer_scraps(cfg: dict, result: dict) -> dict:
    """What 02-transfer glues for evaluate and `make compare` (figures apart)."""
    return {
        "config": cfg, "from_version": cfg["from_version"], "val_acc": result["val_acc"],
        "val_acc_std": result["val_acc_std"], "val_accs": result["val_accs"], "transfer_history": result["histories"][0],
        "transfer_histories": result["histories"], "train_bs": result["train_bs"],
        "steps_per_epoch": result["steps_per_epoch"], "transfer_wall_s": result["wall_s"],
    }


def fitted_batch(cfg: dict, n_fit: int, n_score: int, run_dir: Path | None) -> tuple[int, bool, int]:
    """The global fine-tuning batch for this labelled set (imgwang.train.batching; a multiple of the
    process count under torchrun), printed and recorded in run.json when run_dir is given."""
    s = launch.settings(cfg)
    batch, drop_last = fit_batch(n_fit, cfg["bs"], multiple=s["nproc"] * s["nnodes"])
    steps = steps_per_epoch(n_fit, batch, drop_last)
    if run_dir is not None:
        dropped = f", the last {n_fit % batch} images of each reshuffled epoch left out" if drop_last else ""
        print(f"fine-tuning on {n_fit} labelled images, scoring on {n_score} ({cfg.get('split') or 'val'}): "
              f"batch {batch} (BS={cfg['bs']}), {steps} steps per epoch{dropped}")
        update_stage(run_dir, "transfer", train_bs=batch, steps_per_epoch=steps)
    return batch, drop_last, steps


def repeat_classifier_path(run_dir: Path, repeat: int) -> Path:
    """Where transfer keeps the fine-tuned classifier of one repeat (beside that repeat's checkpoints)."""
    return run_dir / "checkpoints" / f"transfer-{repeat}" / "classifier.pt"


def transfer_on_ranks(cfg: dict, run_dir: Path, runs_dir: Path) -> dict:
    """Kernel side of a torchrun launch: the ranks fine-tune; the result is rebuilt from rank 0's files."""
    if cfg["from_version"] != "none" and launch.settings(cfg)["node_rank"] == 0:
        encoder_path(runs_dir, cfg["from_version"])  # a missing encoder fails here, not in every rank
    sd = load_stage_data(cfg["data"], cfg["size"])  # the cache is built once, here, before the ranks read it
    fit_rows, _, score_rows, _ = sd.labelled(cfg.get("split") or "val")
    batch, _, steps = fitted_batch(cfg, len(fit_rows), len(score_rows), None)  # the ranks print and record it
    got = launch.launch("transfer", cfg, run_dir, runs_dir)
    if not got:  # another node than node 0: its ranks computed; the files and the result are on node 0
        return {}
    record_world(run_dir, "transfer", got["world"])
    device = resolve_device(cfg["device"])
    model = build_classifier(cfg["arch"], len(sd.classes), None, img_size=cfg["size"])
    model.load_state_dict(torch.load(run_dir / "classifier.pt", map_location="cpu", weights_only=True))
    return {"model": model.to(device), "data": sd, "device": device, "train_bs": batch, "steps_per_epoch": steps,
            "pretrained_on_val": pretrained_on_val(runs_dir, cfg["from_version"]),
            **{k: got[k] for k in STAGES["transfer"].results}}


def leaderboard_line(cfg: dict, result: dict) -> str:
    """The result as the Imagewang leaderboard states it, beside the current best entry."""
    from ..data.imagewang import LEADERBOARD_RUNS, leaderboard_entry

    accs = ", ".join(f"{100 * a:.2f}" for a in result["val_accs"])
    # Pretraining on val images (no labels) is what the 72.94% entry did; the line says so wherever it is pasted.
    on_val = " (encoder pretrained on val/ images too, without labels)" if result.get("pretrained_on_val") else ""
    std = result["val_acc_std"]
    spread = f" ± {100 * std:.2f} over {len(result['val_accs'])} runs [{accs}]" if not math.isnan(std) else " (1 run)"
    split = cfg.get("split") or "val"
    line = (f"{cfg['size']} px, {cfg['epochs']} fine-tuning epochs, {cfg['arch']}, from {cfg['from_version']}{on_val}: "
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
