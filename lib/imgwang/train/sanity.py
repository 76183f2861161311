"""Sanity checks for a pretext task (for researchers and tests).

`overfit_one_batch`: can the task's model + loss memorise ONE fixed task batch? If not, the labels, loss
or head are broken (the seed research lost weeks to exactly that). The task batch is built once with a
fixed generator and reused every step, so nothing random stands between the model and memorising it.

`evaluate_pretext`: mean loss and metric of a model over a loader of `Batch`es, no gradients, with a
seeded generator so two calls see the same task batches.
"""

from __future__ import annotations

import torch

from ..data.batch import Batch
from ..models.encoders import create_encoder
from .settings import FitSettings
from .step import TrainStep, call_hook


def _as_batch(images_or_batch) -> Batch:
    if isinstance(images_or_batch, Batch):
        return images_or_batch
    images = images_or_batch
    n = images.shape[0]
    return Batch(images=images,
                 labels=torch.full((n,), -1, dtype=torch.long, device=images.device),
                 indices=torch.arange(n, device=images.device))


def overfit_one_batch(task, images, arch: str = "tinyconv", steps: int = 150, lr: float = 3e-3, seed: int = 0) -> dict:
    """Train a fresh `arch` encoder + the task's head on one task batch with fit's own step (Adam, no weight
    decay, a constant lr, full precision).

    `images`: (B, 3, H, W) float [0, 1] tensor (or a Batch) on the device to use.
    Returns dict(first_loss, last_loss, train_metric, losses, model); last_loss and train_metric come from
    a gradient-free pass after the final step (train mode: the batch's own BatchNorm statistics).
    """
    batch = _as_batch(images)
    device = batch.images.device
    torch.manual_seed(seed)  # model init
    model = task.build_model(create_encoder(arch, batch.images.shape[-1]))
    settings = FitSettings(epochs=1, lr=lr, device=device, optimizer="adam", weight_decay=0.0, schedule="constant",
                           amp="off", channels_last=False, seed=seed)
    step = TrainStep(model, task, settings, total_steps=max(steps, 1), steps_per_epoch=1)  # steps=0: the untrained model
    generator = torch.Generator(device=device).manual_seed(seed)
    inputs, targets = step.prepare(batch, generator)  # once: the same batch every step
    model.train()
    losses = []
    call_hook(task, "on_epoch_start", model, 0, 1)
    for i in range(steps):  # one batch is the whole data set: each step is an epoch's worth of it
        _, loss, _ = step.train(inputs, targets, i)
        losses.append(float(loss.detach()))
    with torch.no_grad():
        outputs, loss = step.forward(inputs, targets)
        last_loss = float(loss)
        metric = float(task.metric(outputs, targets))
    return dict(first_loss=losses[0] if losses else last_loss, last_loss=last_loss, train_metric=metric,
                losses=losses, model=model)


@torch.no_grad()
def evaluate_pretext(task, model, loader, seed: int = 0) -> dict:
    """Example-weighted mean loss and metric of `model` on the task batches built from `loader`.

    `loader` yields `Batch`es (or plain image tensors). The model is left in the mode it was given.
    """
    was_training = model.training
    model.eval()
    total_loss = total_metric = 0.0
    count = 0
    generator = None
    try:
        for item in loader:
            batch = _as_batch(item)
            if generator is None:
                generator = torch.Generator(device=batch.images.device).manual_seed(seed)
            inputs, targets, _ = task.prepare(batch, generator)
            outputs = model(inputs)
            n = len(batch)
            total_loss += float(task.loss(outputs, targets)) * n
            total_metric += float(task.metric(outputs, targets)) * n
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        return dict(loss=float("nan"), metric=float("nan"))
    return dict(loss=total_loss / count, metric=total_metric / count)
