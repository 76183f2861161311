"""The fine-tuning batch for a labelled set of any size.

A fixed batch starves small sets: 100 labelled images at batch 64 with the remainder dropped are one step
of 64 images per epoch, 36 images never seen in that epoch, and a random-init baseline barely trains. So:

- batch = min(BS, max(MIN_BATCH, n // 4)): at least four steps per epoch whenever the set allows it,
  never a batch under MIN_BATCH (BatchNorm statistics of a handful of images are noise) unless the set
  itself is smaller;
- the last, smaller batch of an epoch is kept, unless it has fewer than MIN_BATCH images: then it is
  dropped, so an epoch leaves out at most MIN_BATCH - 1 images (different ones each epoch, as the order
  is reshuffled), and no step ever sees a batch of one.
"""

from __future__ import annotations

MIN_BATCH = 8


def fit_batch(n_images: int, requested: int, multiple: int = 1) -> tuple[int, bool]:
    """-> (batch size, drop_last) for fine-tuning on n_images with the requested batch size; the batch is
    a multiple of `multiple` (the processes that split it under torchrun) when the set allows."""
    if n_images < 1 or requested < 1:
        raise ValueError(f"fit_batch needs images and a positive batch, got n={n_images}, bs={requested}")
    batch = min(requested, max(MIN_BATCH, n_images // 4), n_images)
    batch = max(batch - batch % multiple, min(multiple, n_images))
    remainder = n_images % batch
    return batch, 0 < remainder < MIN_BATCH and n_images > batch


def steps_per_epoch(n_images: int, batch: int, drop_last: bool) -> int:
    return n_images // batch if drop_last else -(-n_images // batch)
