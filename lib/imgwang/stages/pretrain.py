"""Stage 1: train a pretext task on unlabelled images; save the encoder for transfer.

With NPROC > 1 or NNODES > 1 the kernel launches torchrun (imgwang.distributed) and every rank runs
this same function; rank 0 writes the files, and the kernel rebuilds the result from them.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core import atomic
from ..core.device import resolve_device
from ..data import loader_augment
from ..distributed import launch, world
from ..evaluate.monitor import knn_monitor
from ..models.checkpoint import kept_encoder, save_encoder
from ..models.encoders import create_encoder
from ..spec import STAGES
from ..tasks import get_task
from ..train.collapse import collapse_scraps
from ..train.loop import fit
from ..train.settings import FitSettings
from ..train.tracking import make_tracker
from .stage_data import load_stage_data, pretext_split


def build_pretext(cfg: dict):
    """The task and its model around a fresh encoder, as configured (also used by review)."""
    task = get_task(cfg["task"], **cfg.get("task_params", {}))
    if task.makes_views:
        task.view_size = cfg["size"]  # views at SIZE, cut from the whole stored image
        views = {**loader_augment.DEFAULTS, **cfg}  # a run recorded before views took them: the defaults
        task.view_flip_p, task.view_rotations = views["flip_p"], tuple(views["rotations"])
    if "bs" in cfg and "epochs" in cfg:  # sizes that follow the run (SwAV's prototypes)
        task.fit_to_run(batch_size=int(cfg["bs"]), epochs=int(cfg["epochs"]))
    return task, task.build_model(create_encoder(cfg["arch"], cfg["size"]))


def pretext_loaders(sd, task, train_rows, val_rows, bs: int, device, seed: int, shard=(0, 1), augment=None):
    """(train, val) loaders. A task that makes its own views gets the whole stored images (no loader crop:
    the loader's augmentation options do not apply to it), so each view is cropped once, from the whole image."""
    whole = task.makes_views
    train = sd.loader(train_rows, batch_size=bs, device=device, mode="pretrain", seed=seed, shard=shard,
                      augment=augment, whole=whole)
    val = sd.loader(val_rows, batch_size=bs, device=device, mode="eval", seed=seed, whole=whole,
                    min_last=task.min_batch)  # 65 val images at BS=64: one batch of 65, not 64 and a 1 simclr refuses
    return train, val


def run_pretrain(cfg: dict, run_dir: Path, runs_dir: Path | None = None) -> dict:
    """Pretext-train on unsup + train images (no labels); val/ images measure the pretext metric.

    With cfg["pretrain_on_val"] val/ images are pretrained on too and a held-out part of all images
    measures the pretext metric (see pretext_split). `cfg` is resolved (imgwang.stages.resolve) and used as it is."""
    if launch.wanted(cfg):
        return pretrain_on_ranks(cfg, run_dir, Path(runs_dir or run_dir.parent))
    start = time.time()
    device = world.local_device(resolve_device(cfg["device"]))
    lead = world.is_rank_zero()  # under torchrun: rank 0 monitors, tracks and writes
    tracker = make_tracker(cfg["comet"] if lead else "off", run_name=f"{run_dir.name}-pretrain", log_dir=run_dir / "comet")
    sd = load_stage_data(cfg["data"], cfg["size"], progress=lead)
    torch.manual_seed(cfg["seed"])  # initial weights fixed by the seed, whatever ran before in the kernel
    task, model = build_pretext(cfg)
    bs = cfg["bs"]
    train_rows, val_rows, val_set = pretext_split(sd, cfg["pretrain_on_val"])
    train, val = pretext_loaders(sd, task, train_rows, val_rows, bs, device, cfg["seed"], world.shard(),
                                 loader_augment.chosen(cfg))
    steps = len(train) * cfg["epochs"]
    if lead:  # the steps, not the epochs, are what a method's learning follows (docs/tasks.md)
        print(f"pretraining on {len(train_rows)} images; optimizer steps: {len(train)} an epoch, {steps:,} in all "
              f"(batch {min(bs, len(train_rows))}); pretext metric on {len(val_rows)}: {val_set}")
    note = slow_start_note(task, steps)
    if lead and note:
        print(note)
    monitor = knn_monitor(sd, cfg.get("knn_every", 0), cfg["epochs"], bs, device) if lead else None
    # The untrained encoder's kNN accuracy: random conv features already separate some classes, and a
    # pretext task helps only if it beats them. Eval mode, no randomness drawn: training is unchanged.
    knn_init = monitor(model.to(device), 0)["knn_acc"] if monitor is not None else None
    tracker.log_params(cfg)
    try:  # end() writes the offline archive, also after an interruption
        settings = FitSettings.of(cfg, device=device, checkpoint_dir=run_dir / "checkpoints" / "pretrain",
                                  grad_clip=getattr(task, "grad_clip", None))  # DINO clips; other tasks do not
        history = fit(model, task, train, val, settings, tracker=tracker, epoch_metrics=monitor)
    finally:
        tracker.end()
    if lead:
        save_encoder(kept_encoder(model), run_dir / "encoder.pt", safetensors_copy=True)  # both load into timm as they are
        atomic.torch_save(model.state_dict(), run_dir / "pretext_model.pt")
        if not world.in_torchrun():
            record_world(run_dir, "pretrain", world.current().record(bs))
    last = history[-1]
    val_chance = task.chance_over([len(b) for b in val.batch_positions(0)])  # as the val metric is averaged
    return {
        "task": task, "chance": val_chance, "train_chance": task.chance, "model": model, "data": sd, "history": history,
        "device": device,
        "val_metric": last[f"val_{task.metric_name}"], "val_loss": last["val_loss"],
        "images_per_s": sum(h["images_per_s"] for h in history) / len(history),
        "knn_acc": next((h["knn_acc"] for h in reversed(history) if "knn_acc" in h), None), "knn_acc_init": knn_init,
        "pretext_val_set": val_set, "pretext_val_images": len(val_rows), "pretrain_images": len(train_rows),
        "wall_s": time.time() - start, "note": note,
    }


def slow_start_note(task, steps: int) -> str | None:
    """A note line when the run is shorter than the task needs before its features beat a random-init encoder
    (Task.slow_start_steps), so a kNN at the random encoder's level is not read as a broken method."""
    needed = task.slow_start_steps
    if not needed or steps >= needed:
        return None
    return (f"note: {task.name} starts slowly: on the sample it beat a random-init encoder's kNN only after about "
            f"{needed:,} optimizer steps (docs/results.md); this run has {steps:,}, so a kNN near it is expected")


def pretrain_scraps(cfg: dict, result: dict) -> dict:
    """What 01-pretrain glues for later stages, `make compare` and the tasks table (figures apart)."""
    task = result["task"]
    scraps = {
        "config": cfg, "task": task.name, "pretext_metric_name": task.metric_name,
        "pretext_val_metric": result["val_metric"], "pretext_chance": result["chance"], "pretext_val_loss": result["val_loss"],
        "pretrain_history": [{k: v for k, v in h.items() if k != "grad_stats"} for h in result["history"]],
        "pretrain_images_per_s": result["images_per_s"], "pretrain_wall_s": result["wall_s"],
        "pretext_val_set": result.get("pretext_val_set"),  # which images measured the pretext task
    }
    if result.get("note"):  # the slow-start note, for the notebook's summary beside the kNN it explains
        scraps["pretrain_note"] = result["note"]
    scraps.update(collapse_scraps(result["history"]))
    if result["knn_acc"] is not None:  # no classes, or knn_every 0: nothing to glue
        scraps.update(pretrain_knn_acc=result["knn_acc"], pretrain_knn_init=result["knn_acc_init"])
    return scraps


def pretrain_on_ranks(cfg: dict, run_dir: Path, runs_dir: Path) -> dict:
    """Kernel side of a torchrun launch: the ranks train; the result is rebuilt from rank 0's files.
    On a node other than node 0 (NODE_RANK > 0) the result is {}: rank 0 and its files are on node 0."""
    sd = load_stage_data(cfg["data"], cfg["size"])  # the cache is built once, here, before the ranks read it
    got = launch.launch("pretrain", cfg, run_dir, runs_dir)
    if not got:  # another node than node 0: its ranks computed; the files and the result are on node 0
        return {}
    record_world(run_dir, "pretrain", got["world"])
    device = resolve_device(cfg["device"])
    task, model = build_pretext(cfg)
    model.load_state_dict(torch.load(run_dir / "pretext_model.pt", map_location="cpu", weights_only=True))
    task.chance = got["train_chance"]  # a chance that follows the batch (simclr, swav): the ranks' global batch's
    train_rows, val_rows, val_set = pretext_split(sd, cfg["pretrain_on_val"])
    return {"task": task, "model": model.to(device), "data": sd, "device": device,
            "pretext_val_set": val_set, "pretext_val_images": len(val_rows), "pretrain_images": len(train_rows),
            **{k: got[k] for k in STAGES["pretrain"].results}}


def record_world(run_dir: Path, stage: str, record: dict) -> None:
    """run.json: the world the stage trained in (world size, nodes, batches, backend, learning-rate rule)."""
    from ..runs import update_stage

    update_stage(run_dir, stage, world={**record, "lr_rule": "LR as given, for the global batch BS"})
