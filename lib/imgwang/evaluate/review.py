"""Mistake review: which val images the classifier got most confidently wrong, and which pretext examples
the pretext model found hardest, with the images each one was built from (the seed's top_mistakes).

Looking at the hardest examples is the fastest way to find a bug in a task (a wrong label, a leaked
shortcut) or to see that the model's mistakes are ones a person could make too.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch

from ..core.errors import DataError
from ..data.batch import Batch
from .features import eval_mode


def _probs_labels(probs, labels):
    probs, labels = torch.as_tensor(probs).float().cpu(), torch.as_tensor(labels).long().cpu()
    if probs.dim() != 2 or len(probs) != len(labels):
        raise DataError(f"need probabilities (N, C) and N labels, got {tuple(probs.shape)} and {tuple(labels.shape)}")
    return probs, labels


def _rows(probs, labels, rows, indices) -> list[dict]:
    pred = probs.argmax(1)
    out = []
    for i in rows.tolist():
        item = {"index": i, "true": int(labels[i]), "pred": int(pred[i]),
                "prob_pred": float(probs[i, pred[i]]), "prob_true": float(probs[i, labels[i]])}
        if indices is not None:
            item["dataset_index"] = int(indices[i])
        out.append(item)
    return out


def top_mistakes(probs, labels, k: int = 12, indices=None) -> list[dict]:
    """The k wrong predictions made with the highest confidence, most confident first.

    Each dict: index (row in the eval set), true, pred, prob_pred, prob_true (+ dataset_index when
    `indices`, e.g. the third output of `predict`, is given).
    """
    probs, labels = _probs_labels(probs, labels)
    pred = probs.argmax(1)
    wrong = torch.nonzero(pred != labels).flatten()
    conf = probs[wrong, pred[wrong]]
    order = torch.argsort(conf, descending=True, stable=True)[:k]
    return _rows(probs, labels, wrong[order], indices)


def least_confident_correct(probs, labels, k: int = 12, indices=None) -> list[dict]:
    """The k right predictions made with the lowest confidence, least confident first (same dict keys)."""
    probs, labels = _probs_labels(probs, labels)
    pred = probs.argmax(1)
    right = torch.nonzero(pred == labels).flatten()
    conf = probs[right, pred[right]]
    order = torch.argsort(conf, stable=True)[:k]
    return _rows(probs, labels, right[order], indices)


def worst_classes(per_class_acc: dict[str, float], n: int = 5) -> list[tuple[str, float]]:
    """The n classes with the lowest accuracy, worst first, as (name, accuracy), and every class tied with the
    n-th: a cut through a tie (eight classes at 0%, five shown) would hide classes exactly as bad."""
    ranked = sorted(per_class_acc.items(), key=lambda kv: (kv[1], kv[0]))
    if len(ranked) <= n or n < 1:
        return ranked[:max(n, 0)]
    return [kv for kv in ranked if kv[1] <= ranked[n - 1][1]]


# --- pretext mistakes -----------------------------------------------------------------------------

def _take(x, i: int):
    """Example i of a tensor, or of every tensor in a tuple/list/dict, keeping the batch dimension."""
    return _map(x, lambda t: t[i:i + 1])


def _drop(x, i: int, n: int):
    """Everything but example i of n; tensors not batched over the n examples (e.g. DINO's centre) stay whole."""
    return _map(x, lambda t: torch.cat([t[:i], t[i + 1:]]) if t.dim() and t.shape[0] == n else t)


def _map(x, fn):
    if torch.is_tensor(x):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_map(v, fn) for v in x)
    if isinstance(x, dict):
        return {key: _map(v, fn) for key, v in x.items()}
    return x


def example_losses(task, outputs, targets, n: int) -> list[float]:
    """Per-example loss of one task batch, from a task loss that averages over the batch.

    task.per_example_loss(outputs, targets) -> (B,) is used when the task defines it. Otherwise the
    leave-one-out share B*L(all) - (B-1)*L(all but i): for a loss that is a mean of independent
    per-example terms this is exactly example i's term, and for a loss that couples the batch (contrastive
    NT-Xent, SwAV's balanced codes, where a single example alone has no negatives) it is how much example i
    adds to the batch loss, so the examples that make the task hardest still come first.
    """
    per_example = getattr(task, "per_example_loss", None)
    if per_example is not None:
        return per_example(outputs, targets).detach().float().cpu().tolist()
    # mean(): a loss may come back as shape (1,) instead of a 0-d tensor (SwAV's does)
    if n == 1:
        return [task.loss(outputs, targets).float().mean().item()]
    full = task.loss(outputs, targets).float().mean()
    left_out = torch.stack([task.loss(_drop(outputs, i, n), _drop(targets, i, n)).float().mean() for i in range(n)])
    return (n * full - (n - 1) * left_out).cpu().tolist()  # one device sync per batch


def first_tensor(x):
    """The first tensor in a tensor, tuple/list or dict of inputs (the image a person should see)."""
    if torch.is_tensor(x):
        return x
    values = x.values() if isinstance(x, dict) else x
    for v in values:
        t = first_tensor(v)
        if t is not None:
            return t
    return None


def _summary(x, limit: int = 32):
    """A small plain-Python view of one example's output or target (values if short, else the shape)."""
    if torch.is_tensor(x):
        x = x.detach().float().cpu().squeeze(0)
        if x.numel() <= limit:
            return np.round(x.numpy(), 4).tolist()
        return f"tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return [_summary(v, limit) for v in x]
    if isinstance(x, dict):
        return {key: _summary(v, limit) for key, v in x.items()}
    return x


def _as_uint8_images(t: torch.Tensor) -> list[np.ndarray]:
    """One example of the first input tensor -> list of uint8 (3, H, W) images (several if it stacks views).

    Task inputs are images in [0, 1]; values outside are clipped.
    """
    t = t.detach().float().cpu().squeeze(0)
    images = [t] if t.dim() == 3 else list(t.reshape(-1, *t.shape[-3:]))
    return [(im.clamp(0, 1) * 255).round().to(torch.uint8).numpy() for im in images]


def pretext_mistakes(task, model, loader, device="cpu", k: int = 12, seed: int = 0) -> list[dict]:
    """The k pretext examples with the highest loss over `loader`, highest first.

    Task batches are built as in training (partners drawn from the same batch) from a generator seeded
    with `seed`, so two calls see the same examples. An example's loss is its share of its batch's loss
    (`example_losses`); the metric is task.metric on that example alone.

    Each dict: loss, metric (task.metric on the example), target, output (summaries), batch (position of
    the batch in the loader), position (in the batch), sources (dataset indices of every image used,
    from meta["indices"]), inputs (the model's input image(s) as uint8 (3, H, W) arrays).
    """
    device = torch.device(device)
    heap: list[tuple[float, int, dict]] = []  # min-heap of the k worst so far; the counter breaks ties
    counter = 0
    generator = None
    with eval_mode(model):
        for b, batch in enumerate(loader):
            batch = Batch(batch.images.to(device), batch.labels.to(device), batch.indices.to(device))
            if generator is None:
                generator = torch.Generator(device=device).manual_seed(seed)
            inputs, targets, meta = task.prepare(batch, generator)
            outputs = model(inputs)
            n = len(batch)
            losses = example_losses(task, outputs, targets, n)
            sources = meta.get("indices")
            sources = (sources if sources is not None else batch.indices).reshape(n, -1).cpu()
            first = first_tensor(inputs)
            for i, loss in enumerate(losses):
                rank = math.inf if math.isnan(loss) else loss  # a NaN loss is the first thing to look at
                if len(heap) == k and rank <= heap[0][0]:
                    continue
                out_i, tgt_i = _take(outputs, i), _take(targets, i)
                item = {"loss": loss, "metric": torch.as_tensor(task.metric(out_i, tgt_i)).float().mean().item(),
                        "target": _summary(tgt_i), "output": _summary(out_i), "batch": b, "position": i,
                        "sources": [int(s) for s in sources[i] if s >= 0],
                        "inputs": _as_uint8_images(first[i:i + 1]) if first is not None else []}
                counter += 1
                entry = (rank, -counter, item)  # on equal loss, the earlier example stays
                if len(heap) < k:
                    heapq.heappush(heap, entry)
                else:
                    heapq.heapreplace(heap, entry)
    if generator is None:
        raise DataError("the loader yielded no batches, so there are no pretext examples to review")
    return [item for _, _, item in sorted(heap, key=lambda e: (e[0], e[1]), reverse=True)]
