"""unmix's model: one encoder for the composite and its n candidates, then one score per candidate.

Heads (`head`):
  "pair"   an MLP on [e_mix, e_cand, e_mix * e_cand, |e_mix - e_cand|] -> one logit per candidate;
  "dot"    a shared projector (MLPHead) on every embedding, then the dot product of composite and candidate;
  "cosine" the same projector, then their cosine similarity / `temperature` (so it works as a logit).
The composite and the candidates go through the encoder as one (B * (n + 1)) batch (a reshape, not a loop).
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import CosineSimilarityHead, DotProductHead, MLPHead

HEADS = ("pair", "dot", "cosine")


class UnmixModel(nn.Module):
    """(composite (B, 3, H, W), candidates (B, n, 3, H, W)) -> scores (B, n)."""

    def __init__(self, encoder: nn.Module, head: str = "pair", final_bias: float | None = None, hidden: int = 256,
                 proj_dim: int = 128, temperature: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.kind = head
        if head == "pair":
            self.head = MLPHead(4 * encoder.num_features, 1, hidden=(hidden,), final_bias=final_bias)
        else:  # the projector makes the similarity learnable (pooled ReLU features are never negative)
            self.projector = MLPHead(encoder.num_features, proj_dim, hidden=(hidden,))
            self.head = DotProductHead() if head == "dot" else CosineSimilarityHead(temperature)

    def forward(self, composite, candidates: torch.Tensor | None = None) -> torch.Tensor:
        if candidates is None:  # called with the task's inputs tuple
            composite, candidates = composite
        b, n = candidates.shape[:2]
        images = torch.cat([composite.unsqueeze(1), candidates], dim=1).flatten(0, 1)
        emb = self.encoder(images).view(b, n + 1, -1)
        if self.kind != "pair":
            z = self.projector(emb)
            return self.head(z[:, 0], z[:, 1:])
        e_mix, e_cand = emb[:, :1].expand(-1, n, -1), emb[:, 1:]
        pair = torch.cat([e_mix, e_cand, e_mix * e_cand, (e_mix - e_cand).abs()], dim=-1)
        return self.head(pair)[..., 0]  # (B, n); index, not squeeze
