"""What the nearest neighbours in a frozen space share: the class, or the image's colour and brightness?

The kNN accuracy says how often neighbours agree on the class, not what they agree on instead. Three measures
say more, from features already extracted and their K cosine neighbours (imgwang.evaluate.neighbours.nearest,
as the kNN vote's):
- `same_class_share`: the share of each scoring image's k nearest training images that carry its class;
- `statistic_ratio`: the mean distance, in per-image colour statistics (`image_statistics`: each channel's mean
  and standard deviation, standardised on the training images), from a scoring image to its k neighbours, over
  its mean distance to every training image. 1: neighbours no closer in colour and brightness than any image;
  a random-init CNN's neighbours are much closer (it groups by low-level statistics), and a pretrained encoder
  that learnt what colour jitter teaches moves towards 1;
- `neighbour_overlap`: the share of the k neighbours two spaces have in common, e.g. a pretrained encoder and a
  random-init one of its architecture: how far pretraining moved the neighbourhoods from the untrained ones.
"""

from __future__ import annotations

import torch

K = 20  # the kNN vote's k (imgwang.evaluate.knn): the neighbours that vote


def image_statistics(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images -> (N, 2C): each channel's mean, then each channel's standard deviation."""
    x = torch.as_tensor(images).float()
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def same_class_share(train_labels, query_labels, idx: torch.Tensor) -> float:
    train_labels, query_labels = torch.as_tensor(train_labels).long(), torch.as_tensor(query_labels).long()
    return (train_labels[idx] == query_labels[:, None]).float().mean().item()


def statistic_ratio(train_stats, query_stats, idx: torch.Tensor) -> float:
    """Mean statistic distance to the neighbours over the mean distance to all training images (see above)."""
    train_stats, query_stats = torch.as_tensor(train_stats).float(), torch.as_tensor(query_stats).float()
    mean, std = train_stats.mean(0), train_stats.std(0).clamp_min(1e-8)
    train, query = (train_stats - mean) / std, (query_stats - mean) / std
    to_neighbours = (train[idx] - query[:, None]).norm(dim=2).mean()
    return (to_neighbours / torch.cdist(query, train).mean()).item()


def neighbour_overlap(idx_a: torch.Tensor, idx_b: torch.Tensor) -> float:
    """Share of the neighbours two spaces have in common, query by query (1: the same sets, 0: disjoint)."""
    if idx_a.shape != idx_b.shape:
        raise ValueError(f"neighbour lists of different shapes: {tuple(idx_a.shape)} and {tuple(idx_b.shape)}")
    common = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx_a, idx_b))
    return common / max(1, idx_a.numel())
