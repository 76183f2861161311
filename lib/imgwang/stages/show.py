"""Pictures for the notebooks: what pretraining and fine-tuning feed the model (augmented as in training), and
classified images with their verdicts."""

from __future__ import annotations

import numpy as np
import torch

from ..data import loader_augment
from ..evaluate.plots import image_grid, nothing_to_show
from ..evaluate.review import first_tensor


def describe_target(target) -> str:
    t = target.detach().cpu()
    if t.numel() == 1:
        value = t.item()
        return f"{value:.2f}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value)}"
    return "[" + " ".join(f"{v:.2f}" if not float(v).is_integer() else str(int(v)) for v in t.flatten().tolist()) + "]"


def first_batch(loader):
    """The first batch a loader yields (its prefetch thread stopped right after)."""
    batches = iter(loader)
    try:
        return next(batches)
    finally:
        if hasattr(batches, "close"):  # a generator (CachedLoader): stop it now, not at garbage collection
            batches.close()


def pretrain_show_loader(data, cfg: dict, device, task=None, n: int = 64):
    """A loader that feeds pretraining's pictures as pretraining's does: the loader's augmentation (mode
    'pretrain', the run's crop_scale / flip_p / rotations), or, for a task that makes its own views, the whole
    stored images (the task cuts its views from them). Batch size and sharding aside, which do not change a
    picture."""
    from .stage_data import pretext_split

    rows = pretext_split(data, cfg.get("pretrain_on_val", False))[0]
    whole = task is not None and task.makes_views
    return data.loader(rows, batch_size=min(n, len(rows)), device=device, mode="pretrain", seed=cfg.get("seed", 0),
                       augment=None if whole else loader_augment.chosen(cfg), whole=whole)


def transfer_show_loader(data, cfg: dict, device, n: int = 64):
    """A loader that augments as fine-tuning's does (mode 'train', the run's crop_scale / flip_p / rotations)
    over the labelled images fine-tuning sees."""
    rows, labels, _, _ = data.labelled(cfg.get("split", "val"))
    return data.loader(rows, labels, batch_size=min(n, len(rows)), device=device, mode="train", seed=cfg.get("seed", 0),
                       augment=loader_augment.chosen(cfg))


def show_task_batch(task, loader, n: int = 12, seed: int = 0):
    """What the model receives in pretraining: the loader's first batch (its augmentation included) through
    the task (a task that makes views shows its views of each image side by side): see `task_examples`."""
    batch = first_batch(loader)
    generator = torch.Generator(device=batch.images.device).manual_seed(seed)
    inputs, targets, _ = task.prepare(batch, generator)
    images, titles, ncols = task_examples(inputs, targets, n)
    return image_grid(images, titles, ncols=ncols)


def show_train_batch(loader, class_names: list[str], n: int = 12):
    """What the classifier receives in fine-tuning: the first images of a training batch, augmented
    (crop, flip, rotation), titled with their class."""
    batch = first_batch(loader)
    from ..data.imagewang import class_label

    images, labels = batch.images[:n].float().cpu(), batch.labels[:n].tolist()
    return image_grid(list(images), [short(class_label(class_names[y])) for y in labels])


def task_examples(inputs, targets, n: int = 12) -> tuple[list[torch.Tensor], list[str], int]:
    """(images, titles, columns) for up to n tiles. The views of one image (simclr, swav: a tuple of batches)
    sit side by side in one row, so the augmentation's strength shows; otherwise the first image of each
    example, titled with its target."""
    if isinstance(inputs, (tuple, list)) and len(inputs) > 1 and all(torch.is_tensor(v) and v.dim() == 4 for v in inputs):
        k = len(inputs)
        m = min(max(1, n // k), len(inputs[0]))
        images = [inputs[v][i].float().cpu() for i in range(m) for v in range(k)]
        return images, [f"image {i + 1}, view {v + 1}" for i in range(m) for v in range(k)], k * max(1, 6 // k)
    images = first_tensor(inputs)[:n].float().cpu()
    if images.dim() == 5:  # (B, n, 3, H, W) candidates: show the first
        images = images[:, 0]
    targets = targets[0] if isinstance(targets, (tuple, list)) else targets
    titles = [f"target {describe_target(targets[i])}" if torch.is_tensor(targets) else "" for i in range(len(images))]
    return list(images), titles, 6


def mistakes_grid(items: list[dict], result: dict):
    """Images of classified examples titled true / predicted (probability)."""
    cache, names = result["data"].cache, result["class_names"]
    if not items:
        return nothing_to_show()
    images = np.stack([np.asarray(cache.array[i["row"]]) for i in items])
    titles = [f"true {short(names[i['true']])}\npred {short(names[i['pred']])} {i['prob_pred']:.2f}" for i in items]
    return image_grid(images, titles)


def short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
