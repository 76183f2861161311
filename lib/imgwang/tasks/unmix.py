"""unmix: which 2 of n candidate images were blended into the composite (or with what weights)?

For each example, n distinct batch images are shown as candidates in random order; two of them, in
random slots, are blended: composite = w * cand[a] + (1 - w) * cand[b], w ~ Beta(5, 8).
  mode="classify": multi-label, which candidates are in the composite: one score per candidate, BCE with
      logits (`loss="bce"`); metric = exact match of the predicted set (the top-k scores, k = number of true
      sources) with the true set; chance = 1 / C(n, k).
  mode="regress": predict each candidate's weight in the composite (0 for the unused). MSE;
      metric = 1 - mean absolute error. Chance = the metric of the best constant predictor (the median
      of a candidate's weight, which is 0 when at least half the candidates are unused), estimated once
      from 200,000 simulated examples.
A candidate's score (models/unmix.py) comes from `head`: "pair" (an MLP on the two embeddings, their
product and difference), "dot" or "cosine" (a shared projection of each, then their dot product or cosine
similarity / 0.1). `loss="contrastive"` (mode classify, head cosine) is Hadsell, Chopra & LeCun's (2006) on
the Euclidean distance d = sqrt(2 - 2 cos) between the unit-length projections of composite and candidate:
sources are pulled to d = 0, the others pushed beyond d = 1 (cos <= 0.5).
Debug modes from the seed research (each makes one unused slot a trivial positive):
  "duplicate_mix": that slot shows the composite itself (weight 1: it is entirely itself);
  "duplicate_source": that slot shows an exact copy of one of the two sources (same weight as it).

inputs = (composite (B, 3, H, W), candidates (B, n, 3, H, W)); targets (B, n).
meta: `sources` (B, n) = batch position of each candidate (-1 for a composite copy), `mixed_slots`
(B, 2) = the candidate slots that were blended, `weights` (B, 2) = their weights (sum to 1),
`debug_slot` (B,) = the slot a debug mode changed (-1 when none).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import ConfigError
from ..models.heads import inverse_sigmoid
from ..models.losses import contrastive_loss
from ..models.unmix import HEADS, UnmixModel
from .base import Task, register
from .classification import constant_predictor_score, top_k_exact_match
from .sampling import sample_beta, uniform

MODES = ("classify", "regress")
DEBUG_MODES = ("none", "duplicate_mix", "duplicate_source")
LOSSES = ("bce", "contrastive")
TEMPERATURE = 0.1  # the cosine head's: score = cos / TEMPERATURE


def regress_chance(n_sources: int, beta: tuple[float, float], debug: str, samples: int = 200_000) -> tuple[float, float]:
    """(chance, mean target) of regress mode, from `samples` simulated examples (slots are shuffled, so every
    slot's target follows the pooled distribution of one example's n targets)."""
    rng = np.random.default_rng(0)
    w = rng.beta(beta[0], beta[1], samples)
    rows = np.zeros((samples, n_sources))
    rows[:, 0], rows[:, 1] = w, 1 - w
    if debug == "duplicate_mix":
        rows[:, 2] = 1.0
    elif debug == "duplicate_source":
        rows[:, 2] = np.where(rng.random(samples) < 0.5, w, 1 - w)
    return constant_predictor_score(rows.ravel()), float(rows.mean())


@register
class Unmix(Task):
    name = "unmix"

    def __init__(self, *, n_sources: int = 4, beta: tuple = (5.0, 8.0), mode: str = "classify",
                 debug: str = "none", head: str = "pair", loss: str = "bce", noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        for name, value, known in (("mode", mode, MODES), ("debug", debug, DEBUG_MODES), ("head", head, HEADS),
                                   ("loss", loss, LOSSES)):
            if value not in known:
                raise ConfigError(f"unknown unmix {name}={value!r}: use one of {', '.join(known)}")
        if loss == "contrastive" and (mode != "classify" or head != "cosine"):
            raise ConfigError(f"unmix loss=contrastive pulls the sources close and pushes the others away: it needs "
                              f"mode=classify (same/different pairs, not weights) and head=cosine (a distance; "
                              f"got mode={mode}, head={head})")
        min_n = 2 if debug == "none" else 3  # a debug mode needs a free slot
        if int(n_sources) != n_sources or n_sources < min_n:
            raise ConfigError(f"n_sources must be an integer >= {min_n} (debug={debug!r}), got {n_sources}")
        beta = tuple(float(v) for v in beta)
        if len(beta) != 2 or min(beta) <= 0:
            raise ConfigError(f"beta must be two positive numbers (a, b), got {beta}")
        self.n_sources, self.beta, self.mode, self.debug = int(n_sources), beta, mode, debug
        self.min_batch = self.n_sources  # each example mixes n_sources distinct batch images
        self.head, self.loss_name = head, loss
        self.n_positive = 2 if debug == "none" else 3
        if mode == "classify":
            self.metric_name = "exact_match"
            self.chance = 1.0 / math.comb(self.n_sources, self.n_positive)
            self.final_bias = inverse_sigmoid(self.n_positive / self.n_sources) if self.n_positive < self.n_sources else None
        else:
            self.metric_name = "one_minus_mae"
            self.chance, self.final_bias = regress_chance(self.n_sources, beta, debug)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator):
        b, n, dev = images.shape[0], self.n_sources, images.device
        if b < n:
            raise ConfigError(f"unmix shows n_sources={n} distinct batch images per example: use a batch of at least {n}")
        row = torch.arange(b, device=dev)
        # n distinct batch images per example, in random order; then which 2 slots to blend (+1 debug slot).
        sources = uniform((b, b), generator, dev).argsort(dim=1)[:, :n]
        slots = uniform((b, n), generator, dev).argsort(dim=1)
        mixed = slots[:, :2]
        w = sample_beta(*self.beta, b, generator, dev)
        weights = torch.stack([w, 1 - w], dim=1)

        candidates = images[sources]  # (B, n, 3, H, W)
        picked = candidates[row[:, None], mixed]  # (B, 2, 3, H, W)
        composite = (weights.to(images.dtype)[:, :, None, None, None] * picked).sum(dim=1)
        targets = torch.zeros(b, n, device=dev).scatter(1, mixed, weights if self.mode == "regress" else 1.0)
        debug_slot = torch.full((b,), -1, dtype=torch.long, device=dev)
        if self.debug != "none":
            debug_slot = slots[:, 2]
            if self.debug == "duplicate_mix":
                candidates[row, debug_slot], sources[row, debug_slot] = composite, -1
                value = torch.ones(b, device=dev)
            else:  # duplicate_source: copy one of the two blended sources, chosen at random
                which = (uniform((b,), generator, dev) < 0.5).long()
                copied = mixed.gather(1, which[:, None])[:, 0]
                candidates[row, debug_slot], sources[row, debug_slot] = candidates[row, copied], sources[row, copied]
                value = weights.gather(1, which[:, None])[:, 0]
            targets[row, debug_slot] = value if self.mode == "regress" else 1.0

        meta = {"sources": sources, "mixed_slots": mixed, "weights": weights, "debug_slot": debug_slot}
        return (composite, candidates), targets, meta

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return UnmixModel(encoder, self.head, final_bias=self.final_bias, temperature=TEMPERATURE)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.shape != targets.shape:
            raise ValueError(f"unmix outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ")
        targets = targets.to(outputs.dtype)
        if self.loss_name == "contrastive":  # Hadsell et al. on |z_mix - z_cand|, both unit vectors
            distance = (2 - 2 * TEMPERATURE * outputs).clamp(min=1e-12).sqrt()
            return contrastive_loss(distance, targets)
        if self.mode == "classify":
            return F.binary_cross_entropy_with_logits(outputs, targets)  # multi-label: one sigmoid per candidate
        return F.mse_loss(outputs, targets)

    def metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.mode == "regress":
            return 1.0 - (outputs - targets).abs().mean()
        return top_k_exact_match(outputs, targets > 0.5)

