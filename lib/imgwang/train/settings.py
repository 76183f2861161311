"""How `fit` trains: one frozen record of the optimisation, schedule, precision and checkpoint settings.

A stage builds it from its resolved config (`FitSettings.of(cfg, device=..., checkpoint_dir=...)`: every field
named like a config key takes its value); the bench, the GPU check and the overfit check build their own. The
run-time objects (tracker, early stop, per-epoch hooks) are `fit`'s own arguments. Defaults keep every earlier run's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

SHAPES = {"shapes_run": True}  # field metadata: the value shapes the run's numbers (see FitSettings.plan)


@dataclass(frozen=True)
class FitSettings:
    """Every knob of a fit run; `dataclasses.replace(settings, epochs=...)` makes a variant. The fields marked
    SHAPES shape the run's numbers: last.pt records them and a resume must match them exactly."""

    epochs: int = field(metadata=SHAPES)  # epochs of the whole run (a resumed run ends with exactly this many)
    lr: float = field(metadata=SHAPES)  # peak lr of the encoder (of the first parameter group without `.encoder`)
    device: str | torch.device  # "cpu", "cuda", "auto" or a torch.device
    weight_decay: float = field(default=0.05, metadata=SHAPES)  # of kernels; none on biases and norms
    optimizer: str = field(default="adamw", metadata=SHAPES)  # imgwang.train.optim: adamw, adam, sgd, ranger, lars
    schedule: str = field(default="onecycle", metadata=SHAPES)  # imgwang.train.schedule: onecycle, cosine, flat_cos, constant
    warmup_frac: float = field(default=0.1, metadata=SHAPES)  # share of the steps that warm up (onecycle, cosine)
    flat_frac: float = field(default=0.75, metadata=SHAPES)  # share of the steps held flat before the cosine (flat_cos)
    head_lr_mult: float = field(default=1.0, metadata=SHAPES)  # everything but `.encoder` trains at lr * head_lr_mult
    freeze_epochs: int = field(default=0, metadata=SHAPES)  # first epochs: encoder frozen but its norm layers (fastai; train.freeze)
    grad_clip: float | None = field(default=None, metadata=SHAPES)  # max global gradient norm (the epoch's mean norm is then recorded)
    amp: str | bool = "auto"  # autocast: auto (bf16 on CUDA if supported, else fp16; off on CPU), off, bf16, fp16
    channels_last: str | bool = "auto"  # NHWC memory format (auto: on CUDA)
    seed: int = field(default=0, metadata=SHAPES)  # global RNGs at the start, the task's generators per epoch
    checkpoint_dir: Path | None = None  # last.pt (to resume) and best.pt are written here
    resume: bool = False  # continue from checkpoint_dir/last.pt, with the settings it recorded
    monitor: tuple[str, str] | None = None  # (history key, "min"|"max") best.pt tracks; default: the early stop's
    grad_stats: bool = False  # per-layer gradient statistics in each epoch's row
    progress: bool = True  # progress bars and epoch lines (rank 0 only)

    @classmethod
    def of(cls, cfg: dict, **run_time) -> FitSettings:
        """The settings of a resolved stage config (the fields it names), with the run-time values given."""
        return cls(**{**{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg}, **run_time})

    def plan(self, steps_per_epoch: int) -> dict:
        """What shapes the run's numbers (the SHAPES fields): recorded in last.pt, a resume must match it."""
        plan = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("shapes_run")}
        plan["steps_per_epoch"] = steps_per_epoch
        if self.schedule != "flat_cos":  # only then does it shape the run (and older last.pt files lack the key)
            del plan["flat_frac"]
        return plan
