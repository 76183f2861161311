"""The fit loop: one objective (pretext task or supervised), one model, per-epoch history.

Read `fit` top to bottom: set-up, optional resume, then per epoch: train, validate, record, checkpoint,
stop or go on. How it trains is one FitSettings record (settings.py); each training step is
imgwang.train.step's TrainStep, the same code the bench, the GPU check and the overfit check run.
Everything a resumed run needs to continue exactly (weights, optimizer, schedule, grad scaler, history,
RNG states) is in last.pt; batches are reproducible because the loader's order and the task's generator
are functions of (seed, epoch).

Under torchrun (imgwang.distributed) the same loop runs on every rank: BatchNorm over the global batch,
DDP averaging the gradients, losses seeing the global batch inside each training step, the epoch's sums
added over ranks; validation on every rank over the whole val set (what one process measures, with no
gathering); the epoch metrics (kNN) and checkpoints on rank 0, whose row every rank then takes, so all
ranks keep one history and take the same decisions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..core import atomic
from ..core.errors import ConfigError, ImgwangError
from ..core.interrupt import InterruptGuard
from ..core.progress import text_bar
from ..core.threads import refresh_share
from ..distributed import ddp, gather, stop, world
from .checkpointing import FORMAT, load_checkpoint, load_model_state, rng_state, set_rng_state
from .collapse import collapse_warning, embedding_std
from .early_stop import EarlyStop, Monitor
from .freeze import norm_params, set_frozen
from .grad_stats import GradStats
from .plots import plot_grad_stats
from .settings import FitSettings
from .step import TrainStep, as_device, call_hook
from .tracking import Tracker


def fit(model, objective, train_loader, val_loader, settings: FitSettings, *, early_stop: EarlyStop | None = None,
        tracker: Tracker | None = None, epoch_metrics=None, on_epoch_end=None) -> list[dict]:
    """Train `model` on `objective` as `settings` say and return the per-epoch history.

    The model must take one argument (`model(inputs)`); `.encoder` gets `lr`, all other parameters
    lr * head_lr_mult. `settings.monitor=(key, "min"|"max")` picks what best.pt tracks (default: the
    early-stop metric, else val_loss). `epoch_metrics(model, epoch)` returns extra numbers for the epoch's row
    (e.g. a kNN monitor), recorded before the checkpoint; `on_epoch_end(row)` runs after the checkpoint is written.
    SIGINT/SIGTERM stop at the next step and raise TrainingInterrupted (a KeyboardInterrupt subclass;
    last.pt = the last complete epoch). settings.resume continues from checkpoint_dir/last.pt and ends with
    exactly `epochs` epochs, the same weights and history as a run that was never interrupted.
    """
    s = settings
    epochs, lr, grad_clip, seed, resume = s.epochs, s.lr, s.grad_clip, s.seed, s.resume
    steps = len(train_loader)
    plan = s.plan(steps)
    check_plan(model, plan, s.checkpoint_dir, resume)
    s = dataclasses.replace(s, device=as_device(s.device))  # resolved once ("auto" probes the machine)
    model = ddp.prepare_model(model, s.device)
    lead = world.is_rank_zero()  # monitors (kNN), writes checkpoints and prints
    trainable_encoder = [p for p in getattr(model, "encoder", torch.nn.Module()).parameters() if p.requires_grad]
    encoder_norms = norm_params(getattr(model, "encoder", torch.nn.Module()))
    step = TrainStep(model, objective, s, epochs * steps, steps)
    device, opt, sched, scaler = step.device, step.opt, step.sched, step.scaler
    default_monitor = ("val_loss" if val_loader is not None else "train_loss", "min")
    best = Monitor(*(s.monitor or ((early_stop.metric, early_stop.mode) if early_stop else default_monitor)))
    check_monitored(objective.metric_name, val_loader is not None, grad_clip, best, early_stop)
    tracker = tracker or Tracker()
    ckpt = Path(s.checkpoint_dir) if s.checkpoint_dir is not None else None
    history, stopped = [], False
    progress = s.progress and lead
    if resume and world.broadcast_object(ckpt is not None and (ckpt / "last.pt").is_file()):
        history, stopped = restore(ckpt / "last.pt", plan, model, opt, sched, scaler, early_stop, best)
        say(progress, f"resumed from {ckpt / 'last.pt'} after epoch {len(history)} of {epochs}")
    else:
        if resume and lead:
            warnings.warn(f"RESUME asked but {ckpt / 'last.pt'} does not exist yet: starting from epoch 1")
        seed_everything(derive_seed(seed, "fit", *ddp.rank_seed_parts()))
    if lead:
        tracker.log_params(plan)
    runner = EpochRunner(step)

    first, started = len(history), time.perf_counter()
    with InterruptGuard() as local_guard, restore_requires_grad(trainable_encoder):
        guard = stop.shared(local_guard)  # under torchrun every rank stops at the same step
        for epoch in range(first, first if stopped else epochs):
            refresh_share(epoch + 1)  # this stage's share of the CPU cores, if other stages started or ended
            frozen = epoch < s.freeze_epochs
            set_frozen(trainable_encoder, frozen, keep=encoder_norms)  # norm layers train on, as fastai's train_bn
            if step.net is model or frozen != runner.net_frozen:  # DDP tracks the parameters trainable when built
                step.net, runner.net_frozen = ddp.wrap(model, device), frozen
            grads = GradStats(model) if s.grad_stats else None
            t0 = time.perf_counter()
            set_epoch(train_loader, epoch)
            call_hook(objective, "on_epoch_start", model, epoch, epochs)
            gen = seeded_generator(device, derive_seed(seed, "train", epoch, *ddp.rank_seed_parts()))
            train = runner.run(train_loader, gen, guard, epoch, train=True, grads=grads,
                             desc=f"epoch {epoch + 1}/{epochs}", progress=progress)
            train_s = time.perf_counter() - t0
            row = {"epoch": epoch + 1, **prefixed("train", train, objective.metric_name)}
            row.update({k: train[k] for k in ("embedding_std", "embedding_dim") if k in train})  # collapse monitor
            if val_loader is not None:  # every rank, the whole val set: what one process measures, and a loss's own
                set_epoch(val_loader, 0)  # collectives (a DINO centre) meet on every rank
                gen = seeded_generator(device, derive_seed(seed, "val"))
                val = runner.run(val_loader, gen, guard, epoch, train=False, desc="  val", progress=progress)
                row.update(prefixed("val", val, objective.metric_name))
            row.update(train["lrs"], seconds=time.perf_counter() - t0, images_per_s=train["images"] / train_s)
            if "grad_norm" in train:
                row["grad_norm"] = train["grad_norm"]
            if grads is not None:
                row["grad_stats"] = grads.result()
            if epoch_metrics is not None and lead:
                row.update(epoch_metrics(model, epoch + 1))
            row = world.broadcast_object(row)  # rank 0's row (with val and kNN) on every rank
            if not math.isfinite(row["train_loss"]):
                raise ImgwangError(f"training loss became {row['train_loss']} in epoch {epoch + 1}: lower LR (now {lr}) "
                                   f"or set grad_clip; the last complete epoch is {epoch}")
            history.append(row)
            stopped = bool(early_stop and early_stop.step(row))
            is_best = best.improved(row)
            if ckpt is not None and lead:
                save(ckpt, plan, model, opt, sched, scaler, early_stop, best, history, stopped, is_best)
            per_epoch = (time.perf_counter() - started) / (epoch + 1 - first)  # with val, kNN and checkpoints
            log_epoch(tracker, row, steps, progress, epochs, objective.metric_name, stopped, early_stop,
                      left_s=0.0 if stopped else per_epoch * (epochs - epoch - 1))
            if lead and collapse_warning(row):
                print(collapse_warning(row), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(row)
            guard.epoch_completed = epoch + 1
            guard.check(epoch + 1)
            if stopped:
                break
    return history


class EpochRunner:
    """One pass over a loader: training steps (imgwang.train.step) or evaluation, summed on the device."""

    def __init__(self, step: TrainStep):
        self.step = step
        self.net_frozen = False  # whether step.net (DDP) was built around a frozen encoder

    def run(self, loader, gen, guard, epoch, *, train, grads=None, desc="", progress=True) -> dict:
        step, model, objective = self.step, self.step.model, self.step.objective
        model.train(train)  # a frozen encoder too: its BatchNorm statistics keep following the data (train.freeze)
        device = gen.device
        embed = getattr(objective, "embeddings", None) if train else None  # the collapse monitor's input
        sums = torch.zeros(3, device=device)  # loss, metric, embedding std, each * n: on the device, no sync per step
        dim = 0
        norm_sum, n_steps, images = torch.zeros((), device=device), 0, 0
        refresh = max(1, len(loader) // 10)
        step0 = epoch * len(loader)  # global step of the epoch's first batch: the objective's schedules follow it
        bars = progress and not world.in_torchrun()  # a launch streams lines through a pipe: epoch lines only
        with text_bar(loader, total=len(loader), desc=desc, disable=not bars) as bar, \
                contextlib.nullcontext() if train else torch.no_grad(), \
                gather.global_batch() if train else contextlib.nullcontext():
            for i, batch in enumerate(bar):
                guard.check(epoch)
                refresh_share(epoch + 1, only_if_changed=True)  # one stat: a stage started or ended mid-epoch
                inputs, targets = step.prepare(batch, gen)
                if train:
                    outputs, loss, norm = step.train(inputs, targets, step0 + i, grads)
                    if norm is not None:
                        norm_sum += norm
                else:  # evaluation: the plain model (no DDP, no gathering)
                    outputs, loss = step.forward(inputs, targets)
                with torch.no_grad():
                    metric = objective.metric(outputs, targets)
                    spread = torch.zeros((), device=device)
                    if embed is not None:
                        z = embed(outputs)
                        spread, dim = embedding_std(z), z.shape[1]
                n = len(batch)
                sums += torch.stack([loss.detach().float(), metric.detach().float(), spread.to(device)]) * n
                n_steps, images = n_steps + 1, images + n
                if bars and (i + 1) % refresh == 0:
                    s = sums.tolist()
                    bar.set_postfix(loss=f"{s[0] / images:.4f}", **{objective.metric_name: f"{s[1] / images:.4f}"}, refresh=False)
        if n_steps == 0:
            raise ImgwangError(f"the {'training' if train else 'validation'} loader yielded no batches "
                               "(fewer images than one batch with drop_last?)")
        if train and world.is_distributed():  # the epoch's numbers over the global batch
            totals = world.all_reduce_sum(torch.cat([sums, torch.tensor([float(images)], device=device)]))
            sums, images = totals[:3], int(totals[3].item())
        loss_sum, metric_sum, spread_sum = sums.tolist()
        out = {"loss": loss_sum / images, "metric": metric_sum / images, "images": images,
               "lrs": step.lrs if train else {}}
        if embed is not None:
            out.update(embedding_std=spread_sum / images, embedding_dim=dim)
        if train and step.grad_clip is not None:
            out["grad_norm"] = norm_sum.item() / n_steps
        return out


# --- small helpers -----------------------------------------------------------------------------------

def check_plan(model, plan: dict, checkpoint_dir, resume: bool) -> None:
    """Bad arguments fail here, with one line, before any compute."""
    if not isinstance(plan["epochs"], int) or plan["epochs"] < 1:
        raise ConfigError(f"epochs must be a positive integer, got {plan['epochs']!r}")
    if not plan["lr"] > 0:
        raise ConfigError(f"lr must be > 0, got {plan['lr']!r}")
    if plan["steps_per_epoch"] < 1:
        raise ConfigError("the training loader has no batches (fewer images than one batch with drop_last?)")
    if not 0 <= plan["freeze_epochs"] <= plan["epochs"]:
        raise ConfigError(f"freeze_epochs must be in [0, epochs={plan['epochs']}], got {plan['freeze_epochs']}")
    if (plan["freeze_epochs"] or plan["head_lr_mult"] != 1.0) and not hasattr(model, "encoder"):
        raise ConfigError("freeze_epochs and head_lr_mult need a model with an `.encoder` attribute")
    if plan["grad_clip"] is not None and not plan["grad_clip"] > 0:
        raise ConfigError(f"grad_clip must be > 0 or None, got {plan['grad_clip']!r}")
    if resume and checkpoint_dir is None:
        raise ConfigError("resume=True needs the checkpoint_dir of the interrupted run")


def check_monitored(metric_name: str, has_val: bool, grad_clip, *monitors) -> None:
    """A monitored key the history will never have fails now, not after the first epoch."""
    keys = ["train_loss", f"train_{metric_name}", "lr", "head_lr", "seconds", "images_per_s"]
    keys += ["val_loss", f"val_{metric_name}"] if has_val else []
    keys += ["grad_norm"] if grad_clip is not None else []
    for m in monitors:
        if m is not None and m.metric not in keys:
            raise ConfigError(f"cannot monitor {m.metric!r}: the history will have {', '.join(keys)}")


@contextlib.contextmanager
def restore_requires_grad(params):
    """An interrupted frozen epoch must not leave the encoder frozen for whoever uses the model next."""
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed from (seed, purpose, epoch...): independent streams that never collide by accident."""
    digest = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def seed_everything(seed: int) -> None:
    """Global RNGs (dropout, drop-path, anything else random in the model) start from the run's seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_epoch(loader, epoch: int) -> None:
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)


def prefixed(prefix: str, result: dict, metric_name: str) -> dict:
    return {f"{prefix}_loss": result["loss"], f"{prefix}_{metric_name}": result["metric"]}


def save(ckpt: Path, plan, model, opt, sched, scaler, early_stop, best, history, stopped, is_best) -> None:
    state = {"format": FORMAT, "epoch": len(history), "plan": plan, "model": model.state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
             "early_stop": early_stop.state_dict() if early_stop else None, "best": best.state_dict(),
             "history": history, "stopped": stopped, "rng": rng_state()}
    atomic.torch_save(state, ckpt / "last.pt")
    if is_best:  # weights and the record only: best.pt is for using the model, last.pt for continuing
        atomic.torch_save({k: state[k] for k in ("format", "epoch", "plan", "model", "best", "history")}, ckpt / "best.pt")


def restore(path: Path, plan, model, opt, sched, scaler, early_stop, best) -> tuple[list[dict], bool]:
    state = world.broadcast_object(load_checkpoint(path) if world.is_rank_zero() else None)  # rank 0's file
    if "optimizer" not in state:
        raise ImgwangError(f"{path} holds weights only; resume needs a last.pt written by fit")
    differ = [f"{k}={state['plan'].get(k)!r} (now {v!r})" for k, v in plan.items() if state["plan"].get(k) != v]
    if differ:
        raise ConfigError(f"cannot resume from {path}: it was written with {', '.join(differ)}; resume the same run")
    load_model_state(model, state["model"], path)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    if early_stop is not None and state["early_stop"] is not None:
        early_stop.load_state_dict(state["early_stop"])
    best.load_state_dict(state["best"])
    set_rng_state(state["rng"])
    return state["history"], state["stopped"]


def log_epoch(tracker, row, steps, progress, epochs, metric_name, stopped, early_stop, left_s: float = 0.0) -> None:
    numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}
    tracker.log_metrics(numbers, step=row["epoch"] * steps, epoch=row["epoch"])
    if "grad_stats" in row:
        tracker.log_figure(f"grad_stats_epoch_{row['epoch']}", plot_grad_stats(row["grad_stats"]))
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for key in ("train_loss", f"train_{metric_name}", "val_loss", f"val_{metric_name}", "knn_acc", "embedding_std"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['seconds']:.1f}s", f"{row['images_per_s']:.0f} img/s"]
    if left_s >= 1:  # what the epochs so far took each, times the epochs left
        parts.append(f"about {duration(left_s)} left")
    say(progress, "  ".join(parts))
    if stopped:
        say(progress, f"early stop: {early_stop.metric} has not improved for {early_stop.patience} epochs "
                      f"(best {early_stop.best:.4f} at epoch {early_stop.best_epoch})")


def duration(seconds: float) -> str:
    """12s, 4m05s, 2h07m: short enough for the end of an epoch line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def say(progress: bool, line: str) -> None:
    if progress:
        print(line, flush=True)
