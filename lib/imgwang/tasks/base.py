"""The pretext-task contract and the registry of tasks by name.

A task turns a device batch of plain images into model inputs, targets and meta:

    inputs, targets, meta = task.make_batch(images, generator)

`images` is (B, 3, H, W) float in [0, 1] on the device. Partners (patchwork's foreign patch, unmix's
sources) are drawn from the same batch, so one fast loader serves every task. `meta["sources"]` is a
(B, k) long tensor of the *batch positions* of every image used to build each example (-1 = unused);
`prepare` maps them to dataset indices (`meta["indices"]`) so a mistake can be traced to its images.

A task also declares how to build its model around an encoder (`build_model`), its loss, its metric
(higher is better, in [0, 1] for classification-like tasks) and the metric's chance level.

`metric_name` and `chance` are plain attributes, declared one way: a class attribute when fixed, assigned in
`__init__` when they follow the task's parameters, in `make_batch` when they follow the batch size (a run on
several processes then takes the chance of the batches its ranks saw).

Everything else the rest of the lab asks of a task is declared here, with the default most tasks take:
`makes_views` (the task cuts its own views from the whole stored image, so the loader neither crops nor
flips), `forbids_augment` (loader augmentation parameters that would change its labels, with the reason) and
the training hooks `on_epoch_start`, `before_step`, `after_step` (no-ops here; e.g. an EMA teacher's update).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError
from .registry import register  # noqa: F401  (task files import it beside Task)


class Task:
    name: str = ""
    metric_name: str = "accuracy"
    chance: float = 0.0  # the metric's value for a model that learned nothing (a class attribute when fixed)
    makes_views: bool = False  # cuts its own views from the whole stored image: the loader does not augment
    forbids_augment: dict[str, str] = {}  # loader augmentation parameter -> why this task refuses it
    slow_start_steps: int | None = None  # steps before its frozen features are expected to beat random init
    min_batch: int = 1  # the fewest images make_batch takes; a shorter last val batch joins the one before it

    def __init__(self, *, noise_p: float = 0.0):
        if not 0.0 <= noise_p <= 1.0:
            raise ConfigError(f"noise_p must be in [0, 1], got {noise_p}")
        self.noise_p = noise_p

    def chance_over(self, batch_sizes) -> float:
        """The metric's chance averaged as the loop averages the metric (over rows) across batches of these
        sizes; the same as `chance` for a task whose chance does not depend on the batch."""
        return self.chance

    # --- what each task defines -------------------------------------------------------------
    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        """-> (inputs, targets, meta). Must be deterministic given the generator state."""
        raise NotImplementedError

    def build_model(self, encoder: nn.Module) -> nn.Module:
        """A module with `.encoder` (the part that is saved and transferred) mapping inputs -> outputs."""
        raise NotImplementedError

    def loss(self, outputs, targets) -> torch.Tensor:
        raise NotImplementedError

    def metric(self, outputs, targets) -> torch.Tensor:
        raise NotImplementedError

    def fit_to_run(self, *, batch_size: int, epochs: int) -> None:
        """Size what follows the run (SwAV's queue and prototypes) before build_model; most tasks need nothing.
        An embedding method also defines `embeddings(outputs)` -> (B, d): what the collapse monitor measures."""

    # --- training hooks (host-side, never waiting on the device) --------------------------------
    # `step` counts from 0 over the whole run, so a resumed run follows the same schedules.
    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Before each epoch's first step."""

    def before_step(self, model: nn.Module, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Before the forward pass of each step."""

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """After the optimizer step, e.g. an EMA teacher update."""

    # --- shared by every task ---------------------------------------------------------------
    def prepare(self, batch, generator: torch.Generator):
        """Loader Batch -> (inputs, targets, meta) with dataset indices and the noise switch applied."""
        inputs, targets, meta = self.make_batch(batch.images, generator)
        sources = meta.get("sources")
        if sources is not None:
            idx = batch.indices.to(sources.device)
            meta["indices"] = torch.where(sources >= 0, idx[sources.clamp(min=0)], torch.full_like(sources, -1))
        if self.noise_p > 0:
            inputs = replace_with_noise(inputs, self.noise_p, generator)
        return inputs, targets, meta


def replace_with_noise(inputs, p: float, generator: torch.Generator):
    """Debug switch: replace each example's every image tensor by clipped Gaussian noise with probability p.

    With p = 1 nothing about the images reaches the model, so the metric must fall to chance.
    Works on a tensor or a tuple/list of tensors that share the batch dimension.
    """
    tensors = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    b = tensors[0].shape[0]
    device = tensors[0].device
    mask = torch.rand(b, generator=generator, device=generator.device).to(device) < p
    out = []
    for t in tensors:
        noise = (torch.randn(t.shape, generator=generator, device=generator.device).to(device) * 0.25 + 0.5).clamp(0, 1)
        m = mask.view(b, *([1] * (t.dim() - 1)))
        out.append(torch.where(m, noise.to(t.dtype), t))
    return type(inputs)(out) if isinstance(inputs, (tuple, list)) else out[0]


