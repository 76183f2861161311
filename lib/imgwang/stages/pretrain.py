"""Stage 1: train a pretext task on unlabelled images; save the encoder for transfer."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..device import resolve_device
from ..evaluate.monitor import knn_monitor
from ..models.checkpoint import atomic_torch_save, save_encoder
from ..models.encoders import create_encoder
from ..tasks import get_task
from ..train.loop import fit
from ..train.tracking import make_tracker
from .data import load_stage_data


def build_pretext(cfg: dict):
    """The task and its model around a fresh encoder, as configured (also used by review)."""
    task = get_task(cfg["task"], **cfg.get("task_params", {}))
    return task, task.build_model(create_encoder(cfg["arch"]))


def run_pretrain(cfg: dict, run_dir: Path) -> dict:
    """Pretext-train on unsup + train images (no labels); val/ images measure the pretext metric."""
    start = time.time()
    device = resolve_device(cfg["device"])
    tracker = make_tracker(cfg["comet"], run_name=f"{run_dir.name}-pretrain", log_dir=run_dir / "comet")
    sd = load_stage_data(cfg["data"], cfg["size"])
    torch.manual_seed(cfg["seed"])  # initial weights fixed by the seed, whatever ran before in the kernel
    task, model = build_pretext(cfg)
    bs = cfg["bs"]
    train = sd.loader(sd.unlabelled_rows, batch_size=bs, device=device, mode="pretrain", seed=cfg["seed"])
    val = sd.loader(sd.val_rows, batch_size=bs, device=device, mode="eval", seed=cfg["seed"])
    monitor = knn_monitor(sd, cfg.get("knn_every", 0), cfg["epochs"], bs, device)
    # The untrained encoder's kNN accuracy: random conv features already separate some classes, and a
    # pretext task helps only if it beats them. Eval mode, no randomness drawn: training is unchanged.
    knn_init = monitor(model.to(device), 0)["knn_acc"] if monitor is not None else None
    tracker.log_params(cfg)
    try:  # end() writes the offline archive, also after an interruption
        history = fit(
            model, task, train, val, epochs=cfg["epochs"], lr=cfg["lr"], device=device, seed=cfg["seed"],
            checkpoint_dir=run_dir / "checkpoints" / "pretrain", resume=cfg.get("resume", False),
            grad_stats=cfg.get("grad_stats", False), tracker=tracker,
            epoch_metrics=monitor,
        )
    finally:
        tracker.end()
    save_encoder(model.encoder, run_dir / "encoder.pt")
    atomic_torch_save(model.state_dict(), run_dir / "pretext_model.pt")
    last = history[-1]
    return {
        "task": task, "model": model, "data": sd, "history": history, "device": device,
        "val_metric": last[f"val_{task.metric_name}"], "val_loss": last["val_loss"],
        "images_per_s": sum(h["images_per_s"] for h in history) / len(history),
        "knn_acc": next((h["knn_acc"] for h in reversed(history) if "knn_acc" in h), None), "knn_acc_init": knn_init,
        "wall_s": time.time() - start,
    }


def pretrain_scraps(cfg: dict, result: dict) -> dict:
    """What 01-pretrain glues for later stages, `make compare` and the tasks table (figures apart)."""
    task = result["task"]
    scraps = {
        "config": cfg, "task": task.name, "pretext_metric_name": task.metric_name,
        "pretext_val_metric": result["val_metric"], "pretext_chance": task.chance, "pretext_val_loss": result["val_loss"],
        "pretrain_history": [{k: v for k, v in h.items() if k != "grad_stats"} for h in result["history"]],
        "pretrain_images_per_s": result["images_per_s"], "pretrain_wall_s": result["wall_s"],
    }
    if result["knn_acc"] is not None:  # no classes, or knn_every 0: nothing to glue
        scraps.update(pretrain_knn_acc=result["knn_acc"], pretrain_knn_init=result["knn_acc_init"])
    return scraps
