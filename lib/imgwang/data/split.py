"""The dev split: a fixed, class-stratified fifth of train/ held out as the scoring set (SPLIT=dev).

Imagewang has no labelled dev set, so every look at val/ while tuning spends the test set. With
SPLIT=dev, transfer and evaluate fine-tune on the other four fifths of train/ and score on this fifth;
val/ stays untouched until the settings are chosen. Pretraining is not affected: it uses train images
without their labels, as it may.

Which images are held out depends only on each image's class folder and file name (a seeded hash,
ranked within its class), not on the order of a listing, the machine or the run's SEED: every run on
the same data scores on the same images, and adding images to a class moves at most a few of its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..spec.checks import SPLITS  # noqa: F401  (val, dev)
from ..core.errors import ConfigError

DEV_FRACTION = 0.2
DEV_SEED = 0


def _rank_key(path: Path, seed: int) -> bytes:
    path = Path(path)
    return hashlib.blake2b(f"{seed}/{path.parent.name}/{path.name}".encode(), digest_size=8).digest()


def dev_mask(paths, labels, fraction: float = DEV_FRACTION, seed: int = DEV_SEED) -> np.ndarray:
    """True for the images held out as dev: round(fraction * n) of each class's n images (at least one
    when the class has two or more, never all of them)."""
    labels = np.asarray(labels, dtype=np.int64)
    paths = list(paths)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths for {len(labels)} labels")
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = len(members)
        k = min(max(round(fraction * n), 1 if n >= 2 else 0), n - 1)
        ranked = sorted(members, key=lambda i: _rank_key(paths[i], seed))
        mask[ranked[:k]] = True
    return mask


def scoring_split(given: str, tuned_on: str, version: str) -> str:
    """The split evaluate scores on: the one given, else the one transfer scored on. A classifier fine-tuned
    on all of train/ (split val) cannot be scored on dev: those images were in its training set."""
    tuned_on = tuned_on or "val"
    split = given or tuned_on
    if split == "dev" and tuned_on != "dev":
        raise ConfigError(f"SPLIT=dev: {version} was fine-tuned on all of train/, the dev images included; "
                          f"fine-tune with SPLIT=dev first")
    return split
