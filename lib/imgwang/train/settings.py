"""How `fit` trains: one frozen record of the optimisation, schedule, precision and checkpoint settings.

A stage builds it from its resolved config (`FitSettings(epochs=..., lr=..., device=..., **fit_options(cfg))`);
the bench, the GPU check and the overfit check build their own. The run-time objects (tracker, early stop,
per-epoch hooks) are `fit`'s own arguments. Defaults keep every earlier run's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class FitSettings:
    """Every knob of a fit run; `dataclasses.replace(settings, epochs=...)` makes a variant."""

    epochs: int  # epochs of the whole run (a resumed run ends with exactly this many)
    lr: float  # peak learning rate of the encoder (the first parameter group when there is no `.encoder`)
    device: str | torch.device  # "cpu", "cuda", "auto" or a torch.device
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # imgwang.train.optim: adamw, adam, sgd, ranger
    schedule: str = "onecycle"  # imgwang.train.schedule: onecycle, cosine, flat_cos, constant
    warmup_frac: float = 0.1  # share of the steps that warm up (onecycle, cosine)
    flat_frac: float = 0.75  # share of the steps held flat before the cosine (flat_cos)
    head_lr_mult: float = 1.0  # everything but `.encoder` trains at lr * head_lr_mult
    freeze_epochs: int = 0  # first epochs with the encoder frozen but its norm layers (as fastai: train.freeze)
    grad_clip: float | None = None  # max global gradient norm; the epoch's mean norm is then recorded
    amp: str | bool = "auto"  # autocast: auto (bf16 on CUDA if supported, else fp16; off on CPU), off, bf16, fp16
    channels_last: str | bool = "auto"  # NHWC memory format (auto: on CUDA)
    seed: int = 0  # global RNGs at the start, the task's generators per epoch
    checkpoint_dir: Path | None = None  # last.pt (to resume) and best.pt are written here
    resume: bool = False  # continue from checkpoint_dir/last.pt, with the settings it recorded
    monitor: tuple[str, str] | None = None  # (history key, "min"|"max") best.pt tracks; default: the early stop's
    grad_stats: bool = False  # per-layer gradient statistics in each epoch's row
    progress: bool = True  # progress bars and epoch lines (rank 0 only)

    def plan(self, steps_per_epoch: int) -> dict:
        """What shapes the run's numbers: recorded in last.pt, and a resume must match it exactly."""
        plan = dict(epochs=self.epochs, steps_per_epoch=steps_per_epoch, lr=self.lr, weight_decay=self.weight_decay,
                    optimizer=self.optimizer, schedule=self.schedule, warmup_frac=self.warmup_frac,
                    head_lr_mult=self.head_lr_mult, freeze_epochs=self.freeze_epochs, grad_clip=self.grad_clip,
                    seed=self.seed)
        if self.schedule == "flat_cos":  # only then does it shape the run (and older last.pt files lack the key)
            plan["flat_frac"] = self.flat_frac
        return plan
