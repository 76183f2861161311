"""One decode-once cache per (data, size) serving every stage: unlabelled, labelled train and val rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..data.cache import ImageCache, build_cache, storage_size
from ..data.copies import copies_warning
from ..data.imagewang import upsampling_warning
from ..data.layout import HELD_OUT_EVERY, Layout, load_layout
from ..data.loader import CachedLoader
from ..data.loader_augment import make_loader_augment
from ..data.resolve import resolve_data
from ..data.split import SPLITS, dev_mask


def default_cache_dir() -> Path:
    return Path(os.environ.get("IMGWANG_CACHE", ".cache/imgwang"))


@dataclass
class StageData:
    root: Path
    layout: Layout
    cache: ImageCache
    size: int
    unlabelled_rows: np.ndarray  # unsup + train images: what pretext training may use
    train_rows: np.ndarray
    train_labels: np.ndarray
    val_rows: np.ndarray
    val_labels: np.ndarray

    @property
    def classes(self) -> list[str]:
        return self.layout.classes

    def loader(self, rows, labels=None, *, batch_size, device, mode, seed=0, shuffle=None, drop_last=None, shard=(0, 1),
               augment: dict | None = None, whole: bool = False, min_last: int = 1):
        """A device loader over some rows; mode 'pretrain'/'train' augments, 'eval' only resizes.
        `shard=(rank, world)`: this process's slice of every global batch (see CachedLoader).
        `augment`: crop_scale, flip_p, rotations (imgwang.data.loader_augment; its defaults when left out).
        `whole=True`: the stored images as they are, for a task that makes its own views from them.
        `min_last`: in eval mode, a last batch shorter than this joins the one before it (a task's min_batch)."""
        train = mode != "eval"
        return CachedLoader(
            self.cache, rows, labels, batch_size=batch_size, shuffle=train if shuffle is None else shuffle,
            drop_last=train if drop_last is None else drop_last, device=device,
            augment=None if whole else make_loader_augment(self.size, mode, **(augment or {})),
            seed=seed, shard=shard, min_last=min_last,
        )

    def labelled(self, split: str = "val"):
        """(fit rows, fit labels, scoring rows, scoring labels): train/ and val/, or with split 'dev' the
        four fifths of train/ that fine-tuning may see and the held-out fifth (imgwang.data.split)."""
        if split == "val":
            return self.train_rows, self.train_labels, self.val_rows, self.val_labels
        if split != "dev":
            raise DataError(f"unknown split {split!r}: use {' or '.join(SPLITS)}")
        held = dev_mask([self.cache.paths[r] for r in self.train_rows], self.train_labels)
        return self.train_rows[~held], self.train_labels[~held], self.train_rows[held], self.train_labels[held]


def load_stage_data(data: str, size: int, data_root: Path | None = None, cache_dir: Path | None = None,
                    progress: bool = True) -> StageData:
    root = resolve_data(data, data_root)
    layout = load_layout(root)
    paths = sorted({*layout.unlabelled(), *(p for p, _ in layout.train), *(p for p, _ in layout.val)})
    warning = upsampling_warning(data, size, paths)
    if warning and progress:
        print(warning)
    cache = build_cache(paths, storage_size(size), cache_dir or default_cache_dir(), progress=progress)
    if cache.skipped:
        print(f"{len(cache.skipped)} unreadable image(s) skipped; see the cache report:\n{cache.report()}")

    def rows_of(items):
        pairs = [(cache.row_of(p), y) for p, y in items]
        kept = [(r, y) for r, y in pairs if r is not None]
        return np.array([r for r, _ in kept], dtype=np.int64), np.array([y for _, y in kept], dtype=np.int64)

    unlabelled, _ = rows_of([(p, -1) for p in layout.unlabelled()])
    train_rows, train_labels = rows_of(layout.train)
    val_rows, val_labels = rows_of(layout.val)
    needed = (("unlabelled", unlabelled), ("train", train_rows), ("val", val_rows))
    for name, rows in needed if layout.labelled else (needed[0], needed[2]):  # a plain folder has no train/
        if len(rows) == 0:
            raise DataError(f"{root}: no readable {name} images (see the cache report)")
    if progress and layout.labelled:
        if warning := copies_warning(cache, val_rows, train_rows, rows_of([(p, -1) for p in layout.unsup])[0]):
            print(warning)
    return StageData(root, layout, cache, size, unlabelled, train_rows, train_labels, val_rows, val_labels)


def pretext_split(sd: StageData, on_val: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows to pretrain on, rows that measure the pretext task, what the latter are).

    By default pretraining uses unsup + train and the pretext metric is measured on val/. With `on_val`
    (the 72.94% Imagewang entry pretrained on val images too, without labels) val/ joins the pool, and every
    10th image of the pool in path order is held out of pretraining to measure the pretext task instead
    (the entry held out a random 10% of all images). Either way the metric comes from images pretraining
    never saw.
    """
    if not on_val:
        return sd.unlabelled_rows, sd.val_rows, "val/ (never pretrained on)"
    pool = np.unique(np.concatenate([sd.unlabelled_rows, sd.val_rows]))  # cache rows follow sorted paths
    held = pool[::HELD_OUT_EVERY]
    return (np.setdiff1d(pool, held), held,
            f"every {HELD_OUT_EVERY}th image of unsup + train + val (held out of pretraining)")
