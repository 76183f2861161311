"""What an encoder groups together: a fixed set of scoring images beside their nearest training images.

Distances are cosine, as the kNN vote's (imgwang.evaluate.knn), so the neighbours shown are the ones that vote.
The queries are fixed by the seed and the labels alone (one per class, classes in order), so every version of
one data set shows the same images and their rows can be set side by side across runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .plots import short_class as short
from .plots import to_hwc_uint8

N_QUERIES, N_NEIGHBOURS = 6, 4  # a few rows of a few images: enough to see what a space groups by


def pick_queries(labels: torch.Tensor, n: int = N_QUERIES, seed: int = 0) -> torch.Tensor:
    """Positions of n scoring images: one drawn per class (seeded), classes in order, then more rounds if n
    exceeds the classes present."""
    labels = torch.as_tensor(labels).long()
    g = torch.Generator().manual_seed(seed)
    per_class = [(labels == c).nonzero().flatten() for c in labels.unique().tolist()]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    picked, depth = [], 0
    while len(picked) < min(n, len(labels)):
        picked += [int(idx[depth]) for idx in per_class if depth < len(idx)][: n - len(picked)]
        depth += 1
    return torch.tensor(picked, dtype=torch.long)


def nearest(train_feats: torch.Tensor, query_feats: torch.Tensor, k: int = N_NEIGHBOURS) -> torch.Tensor:
    """-> (n_queries, k) positions in the training features of each query's k most cosine-similar rows."""
    train = F.normalize(torch.as_tensor(train_feats).float(), dim=1)
    query = F.normalize(torch.as_tensor(query_feats).float(), dim=1)
    return (query @ train.T).topk(min(k, len(train)), dim=1).indices


def neighbour_table(spaces: dict, query_pos: torch.Tensor, k: int = N_NEIGHBOURS) -> dict:
    """spaces: name -> (train feats, train labels, train rows, scoring feats, scoring labels, scoring rows).
    -> {"query_rows", "query_labels", "spaces": {name: {"rows": (n, k) cache rows, "labels": (n, k)}}}: plain
    lists, so the notebook can plot them and nothing large is kept."""
    first = next(iter(spaces.values()))
    out = {"query_rows": first[5][query_pos].tolist(), "query_labels": first[4][query_pos].tolist(), "spaces": {}}
    for name, (tf, tl, tr, vf, _, _) in spaces.items():
        idx = nearest(tf, vf[query_pos], k)
        out["spaces"][name] = {"rows": tr[idx].tolist(), "labels": tl[idx].tolist()}
    return out


def plot_neighbours(table: dict, image, class_names: list[str]):
    """One row per query: the query, then its nearest training images in each space, side by side. Titles name
    the class; a tick marks a neighbour of the query's class. `image(row)` gives a cache row's image."""
    import matplotlib.pyplot as plt


    spaces = table["spaces"]
    k = len(next(iter(spaces.values()))["rows"][0])
    n = len(table["query_rows"])
    cols = 1 + len(spaces) * k
    fig, axes = plt.subplots(n, cols, figsize=(1.15 * cols, 1.35 * n), squeeze=False, layout="constrained")
    for i, (row, label) in enumerate(zip(table["query_rows"], table["query_labels"])):
        show(axes[i, 0], to_hwc_uint8(image(row)), class_names[label], "query" if i == 0 else None, bold=True)
        for s, (name, found) in enumerate(spaces.items()):
            for j in range(k):
                same = found["labels"][i][j] == label
                title = f"{'✓ ' if same else ''}{class_names[found['labels'][i][j]]}"
                head = f"{name} #{j + 1}" if i == 0 else None
                show(axes[i, 1 + s * k + j], to_hwc_uint8(image(found["rows"][i][j])), title, head,
                     colour="tab:green" if same else "tab:red")
    fig.suptitle("nearest training images (cosine): " + " | ".join(spaces), fontsize=9)
    return fig


def show(ax, picture, title: str, head: str | None, colour: str = "black", bold: bool = False) -> None:
    ax.imshow(picture)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2 if not bold else 3)
    ax.set_title((f"{head}\n" if head else "") + short(title), fontsize=6, color=colour)

