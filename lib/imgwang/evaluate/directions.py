"""How many directions a frozen feature space uses, and what its main ones follow.

A cosine kNN weighs every direction of the space by its spread: when a few directions carry most of it, they
decide who is whose neighbour. Two measures, from features already extracted:
- `rankme`: RankMe (Garrido et al., 2023, arXiv:2210.02885), exp of the entropy of the normalised singular values
  of the feature matrix, p_k = s_k / sum(s) + 1e-7 as the paper writes it: about d when every direction is used,
  1 when one direction holds everything. It needs no labels;
- `main_directions`: the principal directions of the centred features, each with its share of the variance and
  the share of its variance that lies between classes (eta squared: 1 = it separates the classes, about
  (classes - 1) / (images - 1) when it ignores them: 0.04 for the sample's 20 classes over 480 images), and,
  given per-image values of other known factors (on the generated sample: its nuisances), each factor's
  absolute correlation with it.
Both work from the d x d Gram matrix, so 15,000 images of 2,048 features cost a matrix product, not an SVD of
the images.
"""

from __future__ import annotations

import torch

RANKME_EPS = 1e-7  # the paper's epsilon
SHOWN = 10  # directions drawn and summed in 03-evaluate


def rankme(features: torch.Tensor) -> float:
    x = torch.as_tensor(features).double()
    s = torch.linalg.eigvalsh(x.T @ x).clamp_min(0).sqrt()  # the singular values of x
    p = s / s.sum() + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def main_directions(features: torch.Tensor, labels, factors: dict[str, torch.Tensor] | None = None,
                    n: int = 2) -> list[dict]:
    """The first n principal directions: [{"variance_share", "class_share", "factors": {name: |r|}}, ...]."""
    x = torch.as_tensor(features).double()
    x = x - x.mean(0)
    variances, vectors = torch.linalg.eigh(x.T @ x)  # ascending
    variances, vectors = variances.flip(0).clamp_min(0), vectors.flip(1)
    labels = torch.as_tensor(labels).long().to(x.device)
    total = float(variances.sum())
    out = []
    for k in range(min(n, len(variances))):
        score = x @ vectors[:, k]
        out.append({"variance_share": float(variances[k]) / total if total else 0.0,
                    "class_share": between_class_share(score, labels),
                    "factors": {name: abs_correlation(score, torch.as_tensor(v).double().to(x.device))
                                for name, v in (factors or {}).items()}})
    return out


def between_class_share(score: torch.Tensor, labels: torch.Tensor) -> float:
    """eta squared of a one-dimensional score: between-class sum of squares over the total."""
    centred = score - score.mean()
    total = float((centred**2).sum())
    if total == 0:
        return 0.0
    labels = labels.to(score.device)
    means = torch.zeros(int(labels.max()) + 1, dtype=score.dtype, device=score.device).index_add_(0, labels, centred)
    counts = torch.bincount(labels, minlength=len(means)).to(score.dtype)
    return float((means[counts > 0] ** 2 / counts[counts > 0]).sum() / total)


def abs_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = float(a.norm() * b.norm())
    return abs(float((a * b).sum())) / norm if norm > 0 else 0.0


def directions_of(features: torch.Tensor, labels) -> dict:
    """What 03-evaluate shows of one space: RankMe, its dimension and its first SHOWN directions."""
    return {"rankme": rankme(features), "dim": int(features.shape[1]),
            "directions": main_directions(features, labels, n=SHOWN)}


def describe_directions(name: str, spread: dict) -> str:
    """'pretrained: RankMe 31.1 of 128 dimensions; direction 1 holds 38% of the spread (18% of it between
    classes); the first 10 hold 85% (22% between classes)'."""
    d = spread["directions"]
    top = sum(x["variance_share"] for x in d)
    between = sum(x["variance_share"] * x["class_share"] for x in d)
    return (f"{name}: RankMe {spread['rankme']:.1f} of {spread['dim']} dimensions; direction 1 holds "
            f"{100 * d[0]['variance_share']:.0f}% of the spread ({100 * d[0]['class_share']:.0f}% of it between "
            f"classes); the first {len(d)} hold {100 * top:.0f}% ({100 * between / top if top else 0:.0f}% between "
            f"classes)")


def plot_directions(spreads: dict):
    """One panel per space: each main direction's share of the spread, its part between classes dark."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(spreads), figsize=(3.8 * len(spreads), 3.0), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (name, spread) in zip(axes[0], spreads.items()):
        d = spread["directions"]
        at = range(1, len(d) + 1)
        share = [100 * x["variance_share"] for x in d]
        between = [100 * x["variance_share"] * x["class_share"] for x in d]
        ax.bar(at, share, color="lightsteelblue", label="spread")
        ax.bar(at, between, color="navy", label="of it between classes")
        ax.set_xticks(list(at))
        ax.set_xlabel("principal direction")
        ax.set_title(f"{name}: RankMe {spread['rankme']:.1f} of {spread['dim']}", fontsize=9)
    axes[0, 0].set_ylabel("% of the features' variance")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle("How the frozen features spread (train images)", fontsize=9)
    return fig
