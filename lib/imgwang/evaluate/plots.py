"""Evaluation figures for notebooks: confusion matrix, image grids, the pretext task's worst examples beside
their sources. (Training curves and gradient statistics: imgwang.train.plots; compare's charts: stages/compare.)

Every function builds its figure with pyplot and returns it: the inline backend shows it at the end of the
cell, and the caller may glue it or save it. Nothing here calls plt.show() or closes a figure; close the
returned figure yourself when making many in a loop.
"""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import numpy as np

from ..core.errors import DataError

MOST_CLASSES_SHOWN = 25  # a confusion matrix or per-class table beyond this is a wall of numbers, not a picture


def plot_confusion(cm, class_names, present_only: bool = True, title: str = "confusion (rows = true class)",
                   most: int = MOST_CLASSES_SHOWN):
    """Heat map of a confusion matrix with the counts written in the non-empty cells.

    present_only: rows are the classes that occur in the evaluation set (Imagewang val holds 10 of 20), and
    columns are those classes plus any other class that received a prediction, so no mistake is hidden.
    Otherwise every class gets a row and a column.
    With more than `most` such classes (a folder of 100 or 1,000 classes), it shows the `most` classes with the
    most mistakes (made on them or into them) and one last column, "other", with what their images were
    mistaken for outside them: every row still sums to its class's images.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise DataError(f"confusion matrix of shape {cm.shape} does not match {len(class_names)} class names")
    rows = np.arange(len(cm))
    cols = rows
    if present_only:
        rows = np.flatnonzero(cm.sum(1) > 0)
        cols = np.flatnonzero((cm.sum(1) > 0) | (cm.sum(0) > 0))
    names = [class_names[c] for c in cols]
    if len(cols) > most:
        title = f"{title}: the {most} of {len(cols)} classes with the most mistakes"
        cols = busiest_classes(cm, cols, most)
        rows = np.intersect1d(cols, rows)
        names = [class_names[c] for c in cols] + ["other"]
    sub = cm[np.ix_(rows, cols)]
    if len(names) > len(cols):
        sub = np.concatenate([sub, (cm[rows].sum(1) - sub.sum(1))[:, None]], axis=1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(names), 1.0 + 0.4 * len(rows)), layout="constrained")
    ax.imshow(sub, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(rows)), [class_names[r] for r in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = sub.max() / 2 if sub.size else 0
    for i, j in zip(*np.nonzero(sub)):
        ax.text(j, i, str(int(sub[i, j])), ha="center", va="center", fontsize=7,
                color="white" if sub[i, j] > threshold else "black")
    return fig


def busiest_classes(cm: np.ndarray, candidates: np.ndarray, most: int) -> np.ndarray:
    """The `most` candidates with the most mistakes, made on their images or into them (ties: the lower index),
    in index order."""
    wrong = cm - np.diag(np.diag(cm))
    mistakes = wrong.sum(1) + wrong.sum(0)
    order = sorted(candidates, key=lambda c: (-mistakes[c], c))
    return np.sort(np.asarray(order[:most], dtype=int))


def per_class_table(per_class_acc: dict[str, float], most: int = MOST_CLASSES_SHOWN):
    """Per-class accuracy, lowest first, as a styled table; with more than `most` classes only the `most` lowest,
    the caption saying how many there are and, when the cut runs through a tie, how many share the last accuracy
    shown (all of them stay in the `per_class_acc` scrap)."""
    import pandas as pd

    table = pd.Series(per_class_acc, name="accuracy", dtype=float).sort_values(kind="stable").to_frame()
    styled = table.head(most).style.format("{:.1%}")
    if len(table) > most:
        accuracy = table["accuracy"]  # sorted: the cut runs through a tie when the first row left out equals the last shown
        cut = accuracy.iloc[most - 1]
        tie = f"; {int((accuracy == cut).sum())} classes share the last one's {cut:.1%}" if accuracy.iloc[most] == cut else ""
        styled = styled.set_caption(f"the {most} lowest of {len(table)} classes{tie} (all of them: the per_class_acc scrap)")
        # one line above the two-column table, not wrapped to the table's width
        styled = styled.set_table_styles([{"selector": "caption", "props": "white-space: nowrap; text-align: left"}])
    return styled


def nothing_to_show(text: str = "nothing to show"):
    """A small figure holding one line of text, where a grid has no images (no mistakes, no correct prediction)."""
    fig, ax = plt.subplots(figsize=(3, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def to_hwc_uint8(image) -> np.ndarray:
    """(3, H, W) or (H, W, 3) image, uint8 or float in [0, 1], tensor or array -> (H, W, 3) uint8."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim != 3:
        raise DataError(f"expected one image (3, H, W), got shape {image.shape}")
    if image.shape[0] in (1, 3):  # channels first, the project's layout; (H, W, 3) is accepted too
        image = image.transpose(1, 2, 0)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return image


def image_grid(images, titles=None, ncols: int = 6, size: float = 2.0):
    """Grid of N images (N, 3, H, W) uint8 or float in [0, 1], or a list of such images; one axes per image."""
    images = list(images)
    if not images:
        raise DataError("image_grid got no images")
    if titles is not None and len(titles) != len(images):
        raise DataError(f"image_grid got {len(images)} images but {len(titles)} titles")
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * nrows),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            ax.remove()  # keep exactly one axes per image
            continue
        ax.imshow(to_hwc_uint8(images[i]))
        ax.axis("off")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    return fig


def _first_title(mistake: dict) -> str:
    """'input  loss L', plus the target and the model's output when they are short enough to read."""
    lines = [f"input  loss {mistake['loss']:.3g}"]
    said = [f"{name} {_short(mistake.get(name))}" for name in ("target", "output") if _short(mistake.get(name))]
    return "\n".join(lines + ([" ".join(said)] if said else []))


def _short(value, most: int = 4) -> str:
    """A number or a list of at most `most` numbers, compactly; anything else ''."""
    if isinstance(value, (int, float)):
        return f"{value:.3g}"
    if isinstance(value, list) and 0 < len(value) <= most and all(isinstance(v, (int, float)) for v in value):
        return "[" + " ".join(f"{v:.2g}" for v in value) + "]"
    return ""


def plot_pretext_mistakes(mistakes: list[dict], source_images_fn, max_inputs: int = 3, max_sources: int = 4,
                          size: float = 1.8):
    """One row per mistake: the model's input image(s), then the source images it was built from.

    source_images_fn(dataset_index) -> uint8 (3, H, W), e.g. `lambda i: cache.array[i]`.
    """
    if not mistakes:
        raise DataError("no pretext mistakes to plot")
    rows = [(m["inputs"][:max_inputs], m["sources"][:max_sources]) for m in mistakes]
    ncols = max(len(inputs) + len(sources) for inputs, sources in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols, size * len(rows) + 0.3),
                             squeeze=False, layout="constrained")
    for m, (inputs, sources), ax_row in zip(mistakes, rows, axes):
        cells = [(im, _first_title(m) if j == 0 else "input") for j, im in enumerate(inputs)]
        cells += [(source_images_fn(s), f"source {s}") for s in sources]
        for ax, cell in zip(ax_row, cells + [None] * (ncols - len(cells))):
            if cell is None:
                ax.remove()  # exactly one axes per image shown
                continue
            ax.imshow(to_hwc_uint8(cell[0]))
            ax.set_title(cell[1], fontsize=7)
            ax.axis("off")
    return fig


def short_class(name: str, n: int = 14) -> str:
    """A class label for a small title: 'n02086240 Shih-Tzu' -> 'Shih-Tzu' (the WordNet id says nothing at a
    glance), cut to n characters."""
    name = re.sub(r"^n\d{8} ", "", str(name))
    return name if len(name) <= n else name[: n - 1] + "…"
