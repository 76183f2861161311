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
"""

from __future__ import annotations

import torch

RANKME_EPS = 1e-7  # the paper's epsilon


def rankme(features: torch.Tensor) -> float:
    s = torch.linalg.svdvals(torch.as_tensor(features).double())
    p = s / s.sum() + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def main_directions(features: torch.Tensor, labels, factors: dict[str, torch.Tensor] | None = None,
                    n: int = 2) -> list[dict]:
    """The first n principal directions: [{"variance_share", "class_share", "factors": {name: |r|}}, ...]."""
    x = torch.as_tensor(features).double()
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    labels = torch.as_tensor(labels).long()
    share = s**2 / (s**2).sum()
    out = []
    for k in range(min(n, len(s))):
        score = u[:, k] * s[k]
        out.append({"variance_share": float(share[k]), "class_share": between_class_share(score, labels),
                    "factors": {name: abs_correlation(score, torch.as_tensor(v).double())
                                for name, v in (factors or {}).items()}})
    return out


def between_class_share(score: torch.Tensor, labels: torch.Tensor) -> float:
    """eta squared of a one-dimensional score: between-class sum of squares over the total."""
    centred = score - score.mean()
    total = float((centred**2).sum())
    if total == 0:
        return 0.0
    means = torch.zeros(int(labels.max()) + 1, dtype=score.dtype).index_add_(0, labels, centred)
    counts = torch.bincount(labels, minlength=len(means)).to(score.dtype)
    return float((means[counts > 0] ** 2 / counts[counts > 0]).sum() / total)


def abs_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = float(a.norm() * b.norm())
    return abs(float((a * b).sum())) / norm if norm > 0 else 0.0
