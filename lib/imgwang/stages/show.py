"""Pictures for the notebooks: what a task feeds the model, and classified images with their verdicts."""

from __future__ import annotations

import numpy as np
import torch

from ..evaluate.plots import image_grid
from ..evaluate.review import first_tensor



def describe_target(target) -> str:
    t = target.detach().cpu()
    if t.numel() == 1:
        value = t.item()
        return f"{value:.2f}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value)}"
    return "[" + " ".join(f"{v:.2f}" if not float(v).is_integer() else str(int(v)) for v in t.flatten().tolist()) + "]"


def show_task_batch(task, data, device, n: int = 12, seed: int = 0):
    """A grid of task inputs (the first image of each example) titled with their targets."""
    loader = data.loader(data.val_rows, batch_size=min(64, len(data.val_rows)), device=device, mode="eval")
    batch = next(iter(loader))
    generator = torch.Generator(device=batch.images.device).manual_seed(seed)
    inputs, targets, _ = task.prepare(batch, generator)
    images = first_tensor(inputs)[:n].float().cpu()
    if images.dim() == 5:  # (B, n, 3, H, W) candidates: show the first
        images = images[:, 0]
    targets = targets[0] if isinstance(targets, (tuple, list)) else targets
    titles = [f"target {describe_target(targets[i])}" if torch.is_tensor(targets) else "" for i in range(len(images))]
    return image_grid(images, titles)


def mistakes_grid(items: list[dict], result: dict):
    """Images of classified examples titled true / predicted (probability)."""
    cache, names = result["data"].cache, result["class_names"]
    if not items:
        return image_grid(np.zeros((1, 3, 8, 8), np.uint8), ["nothing to show"])
    images = np.stack([np.asarray(cache.array[i["row"]]) for i in items])
    titles = [f"true {short(names[i['true']])}\npred {short(names[i['pred']])} {i['prob_pred']:.2f}" for i in items]
    return image_grid(images, titles)


def short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
