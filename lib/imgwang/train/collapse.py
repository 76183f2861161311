"""Collapse monitor for the embedding methods (simclr, swav, dino, byol): SimSiam's measure (Chen & He, 2021,
"Exploring Simple Siamese Representation Learning", section 4.1): the standard deviation over the batch of each
dimension of the L2-normalised embeddings, averaged over the dimensions. Embeddings spread over the sphere
give about 1 / sqrt(d) (d the embedding width); collapsed ones, all alike, give 0.

The training loop measures it on every training batch of a task that defines `embeddings(outputs)` and records
the epoch's mean as `embedding_std` (with `embedding_dim`); below FLOOR_FRACTION / sqrt(d) a warning line says
the embeddings are collapsing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FLOOR_FRACTION = 0.2  # of the healthy 1 / sqrt(d): a fifth of it is far into collapse, above noise


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """(B, d) embeddings -> mean over dimensions of the per-dimension std of the L2-normalised rows (a tensor,
    no host sync)."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def embedding_std_floor(dim: int) -> float:
    return FLOOR_FRACTION / math.sqrt(dim)


def collapse_warning(row: dict) -> str | None:
    """The warning line for an epoch's history row whose embedding_std is below the floor, else None."""
    if "embedding_std" not in row:
        return None
    floor = embedding_std_floor(row["embedding_dim"])
    if row["embedding_std"] >= floor:
        return None
    return (f"warning: embedding_std {row['embedding_std']:.4f} in epoch {row['epoch']} is below the collapse floor "
            f"{floor:.4f} ({FLOOR_FRACTION}/sqrt({row['embedding_dim']}); healthy about "
            f"{1 / math.sqrt(row['embedding_dim']):.4f}): the embeddings are collapsing")


def collapse_scraps(history: list[dict]) -> dict:
    """`embedding_std` (the last epoch's) and `embedding_std_floor` for 01-pretrain to glue; {} for tasks
    that have no embeddings."""
    rows = [h for h in history if "embedding_std" in h]
    if not rows:
        return {}
    return {"embedding_std": rows[-1]["embedding_std"], "embedding_std_floor": embedding_std_floor(rows[-1]["embedding_dim"])}
