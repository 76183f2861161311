"""Exact copies across splits: a val image whose decoded pixels equal a train or unsup image's.

A folder put together by hand often holds some (the same file saved under two classes' folders, or copied into
both train/ and val/). Each one turns part of the val score into a memory test, and an unsup copy of a val image
means pretraining saw it. The cache hashes every decoded row (imgwang.data.cache.row_digests), so finding them
costs nothing at a stage's start; re-encoded or resized copies are not exact and are not found.
"""

from __future__ import annotations

import numpy as np

from .cache import ImageCache


def exact_copies(cache: ImageCache, rows: np.ndarray, among: np.ndarray) -> list[tuple[int, int]]:
    """(row of `rows`, the first row of `among` with the same pixels), for every row of `rows` that has one."""
    if cache.digests is None:  # a cache written by hand (the benchmarks'): nothing to compare
        return []
    first: dict[str, int] = {}
    for r in among:
        first.setdefault(cache.digests[r], int(r))
    return [(int(r), first[cache.digests[r]]) for r in rows if cache.digests[r] in first]


def copies_warning(cache: ImageCache, val_rows: np.ndarray, train_rows: np.ndarray, unsup_rows: np.ndarray) -> str | None:
    """One warning line per kind of copy (val in train/, val in unsup/), with an example; None when there is none."""
    lines = []
    for where, among, consequence in (("train/", train_rows, "val scores overstate what the model learned"),
                                      ("unsup/", unsup_rows, "pretraining saw them")):
        found = exact_copies(cache, val_rows, among)
        if found:
            val, other = found[0]
            lines.append(f"warning: {len(found)} of {len(val_rows)} val images are exact copies of {where} images "
                         f"({consequence}), e.g. {cache.paths[val]} = {cache.paths[other]}")
    return "\n".join(lines) or None
