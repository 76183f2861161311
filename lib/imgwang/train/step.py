"""The training step: the one `fit` runs, and the one the bench, the GPU check and the overfit check run.

`TrainStep(model, objective, settings, total_steps, steps_per_epoch)` sets up what a step needs from the
FitSettings: the model on the device in its memory format, the autocast precision, the optimizer over our
parameter groups, the lr schedule and the fp16 grad scaler. Then per batch:

    inputs, targets = step.prepare(batch, generator)   # the objective's task batch, in the memory format
    outputs, loss = step.train(inputs, targets, i)     # hooks, forward under autocast, loss, backward,
                                                       # unscale, clip, optimizer, scaler, schedule
    outputs, loss = step.forward(inputs, targets)      # evaluation (the caller holds torch.no_grad)

Nothing in it waits on the device (tests/test_host_sync.py): the clipped norm comes back as a tensor.
"""

from __future__ import annotations

import contextlib

import torch

from ..core.device import resolve_device, use_fastest_kernels
from ..core.errors import ConfigError
from .optim import make_optimizer
from .schedule import make_scheduler
from .settings import FitSettings


class TrainStep:
    def __init__(self, model, objective, settings: FitSettings, total_steps: int, steps_per_epoch: int):
        self.device = as_device(settings.device)
        self.model, self.objective = model.to(self.device), objective
        use_fastest_kernels(self.device)
        self.cast_dtype = autocast_dtype(settings.amp, self.device)
        self.memory_format = torch.channels_last if use_channels_last(settings.channels_last, self.device) else None
        if self.memory_format is not None:
            model.to(memory_format=self.memory_format)
        self.opt = make_optimizer(model, settings.optimizer, settings.lr, settings.weight_decay, settings.head_lr_mult)
        self.sched = make_scheduler(self.opt, settings.schedule, total_steps, settings.warmup_frac, settings.flat_frac)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cast_dtype == torch.float16)
        self.grad_clip = settings.grad_clip
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.net = model  # what a training step calls: the model, or DDP around it (fit sets it per epoch)
        self.lrs: dict = {}  # each group's lr the last step used

    def prepare(self, batch, generator):
        """The objective's inputs and targets for a loader batch (its meta is for review, not training)."""
        inputs, targets, _ = self.objective.prepare(batch, generator)
        return self.place(inputs), targets

    def place(self, inputs):
        """Ready-made inputs in the model's memory format."""
        return to_memory_format(inputs, self.memory_format)

    def forward(self, inputs, targets, net=None):
        with autocast(self.device, self.cast_dtype):
            outputs = (net or self.model)(inputs)
            loss = self.objective.loss(outputs, targets)
        return outputs, loss

    def train(self, inputs, targets, step: int, grads=None):
        """One optimisation step; `step` counts from 0 over the whole run (the objective's hooks and
        schedules follow it). `grads` (a GradStats) sees the true gradients before clipping.
        Returns (outputs, loss, the pre-clip gradient norm as a tensor, or None without grad_clip)."""
        call_hook(self.objective, "before_step", self.model, step, self.total_steps, self.steps_per_epoch)
        outputs, loss = self.forward(inputs, targets, self.net)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)  # true gradients for clipping and grad stats (no-op without fp16)
        if grads is not None:
            grads.update()
        norm = None
        if self.grad_clip is not None:
            params = [p for g in self.opt.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip).detach().float()
        self.lrs = group_lrs(self.opt)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.sched.last_epoch < self.total_steps:
            self.sched.step()
        call_hook(self.objective, "after_step", self.model, step, self.total_steps)
        return outputs, loss, norm


def call_hook(objective, name: str, *args) -> None:
    """A training hook of the objective: a task declares them all (imgwang.tasks.base.Task, no-ops there); a
    plain objective such as fine-tuning's classification may have none."""
    hook = getattr(objective, name, None)
    if hook is not None:
        hook(*args)


def as_device(device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(str(device))


def autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def autocast_dtype(amp, device: torch.device):
    """None = full precision. auto: bf16 on CUDA when supported, else fp16 (with a GradScaler); off on CPU."""
    if amp in (False, None, "off", "no"):
        return None
    if amp in (True, "auto", "on"):
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp='fp16' needs a CUDA device; use amp='bf16' or 'off' on the CPU")
        return torch.float16
    raise ConfigError(f"unknown amp={amp!r}; use auto, off, bf16 or fp16")


def use_channels_last(channels_last, device: torch.device) -> bool:
    if channels_last == "auto":
        return device.type == "cuda"
    return bool(channels_last)


def to_memory_format(inputs, memory_format):
    if memory_format is None:
        return inputs
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_memory_format(t, memory_format) for t in inputs)
    return inputs.contiguous(memory_format=memory_format) if torch.is_tensor(inputs) and inputs.dim() == 4 else inputs


def group_lrs(opt) -> dict:
    """lr = the encoder's lr (the first group's when there is no encoder); head_lr beside it."""
    lrs = {g.get("name", ""): g["lr"] for g in opt.param_groups}
    out = {"lr": lrs.get("encoder", lrs.get("encoder_no_decay", opt.param_groups[0]["lr"]))}
    head = lrs.get("head", lrs.get("head_no_decay"))
    if head is not None and ("encoder" in lrs or "encoder_no_decay" in lrs):
        out["head_lr"] = head
    return out
