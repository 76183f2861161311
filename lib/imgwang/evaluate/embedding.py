"""A 2-D map of a feature space: t-SNE (scikit-learn) of scoring-set features, coloured by class.

t-SNE keeps neighbourhoods, not distances: tight same-coloured islands mean the space groups images by class;
the size of and gaps between islands mean little (Wattenberg et al. 2016, "How to use t-SNE effectively").
Features are L2-normalised (the kNN's cosine geometry), reduced to at most 50 dimensions by PCA (the usual
step before t-SNE, sklearn's advice), and at most MAX_POINTS images are drawn (stratified, seeded) so the map
costs a second or two whatever the size of the scoring set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MAX_POINTS = 300
MIN_POINTS = 5  # below this a map shows nothing a table would not (and t-SNE needs perplexity < N)
PCA_DIMS = 50
MAX_ITER = 500


def subsample(labels, n: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most n scoring images, the same share of each class (seeded)."""
    labels = np.asarray(labels)
    if len(labels) <= n:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[: max(1, round(n * np.mean(labels == c)))]
              for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))[:n]


def tsne_2d(feats, seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) t-SNE coordinates (cosine geometry, PCA to <= 50 dims first)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    x = F.normalize(torch.as_tensor(feats).float(), dim=1).numpy()
    dims = min(PCA_DIMS, x.shape[1], len(x))
    if x.shape[1] > dims:
        x = PCA(dims, random_state=seed).fit_transform(x)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))  # t-SNE needs perplexity < N
    # sklearn's OpenMP threads would take every core, whatever this stage's share (imgwang.core.threads): on a shared
    # machine they spin-wait and run ~10x slower. 500 iterations (250 of them early exaggeration) settle 300 points.
    with threadpool_limits(torch.get_num_threads()):
        tsne = TSNE(2, perplexity=perplexity, init="pca", max_iter=MAX_ITER, random_state=seed)
        return tsne.fit_transform(x).astype(np.float32)


def feature_maps(spaces: dict, labels, seed: int = 0) -> dict:
    """spaces: name -> (N, D) scoring features in one order, labels: (N,). -> {"labels": [...],
    "maps": {name: [[x, y], ...]}}: the same images in every space, as plain lists."""
    keep = subsample(labels, seed=seed)
    if len(keep) < MIN_POINTS:
        return {"labels": np.asarray(labels)[keep].tolist(), "maps": {}}
    return {"labels": np.asarray(labels)[keep].tolist(),
            "maps": {name: tsne_2d(np.asarray(f)[keep], seed).tolist() for name, f in spaces.items()}}


def plot_feature_maps(maps: dict, class_names: list[str]):
    """One t-SNE panel per space, the same images coloured by class, a shared legend (up to 20 classes: beyond
    that tab20's colours repeat and a legend would outgrow the panels)."""
    import matplotlib.pyplot as plt

    labels = np.asarray(maps["labels"])
    if not maps["maps"]:
        from .plots import nothing_to_show

        return nothing_to_show(f"{len(labels)} scoring images: too few for a map")
    present = np.unique(labels)
    colours = plt.get_cmap("tab20" if len(present) > 10 else "tab10")
    n = len(maps["maps"])
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 1.8, 3.6), squeeze=False, layout="constrained")
    for ax, (name, xy) in zip(axes[0], maps["maps"].items()):
        xy = np.asarray(xy)
        for i, c in enumerate(present):
            at = labels == c
            ax.scatter(xy[at, 0], xy[at, 1], s=9, color=colours(i % colours.N), label=class_names[c])
        ax.set_title(f"{name} ({len(labels)} images)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    title = "t-SNE of frozen features, coloured by class"
    if len(present) <= colours.N:
        axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5, frameon=False)
    else:
        title += f" ({len(present)} classes: colours repeat, no legend)"
    fig.suptitle(title, fontsize=9)
    return fig
