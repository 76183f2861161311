"""unmix: which 2 of n candidate images were blended into the composite (or with what weights)?

For each example, n distinct batch images are shown as candidates in random order; two of them, in
random slots, are blended: composite = w * cand[a] + (1 - w) * cand[b], w ~ Beta(5, 8).
  mode="classify": multi-label, which candidates are in the composite. BCE with logits on n outputs;
      metric = exact match of the predicted set (the top-k scores, k = number of true sources) with the
      true set; chance = 1 / C(n, k).
  mode="regress": predict each candidate's weight in the composite (0 for the unused). MSE;
      metric = 1 - mean absolute error. Chance = the metric of the best constant predictor (the median
      of a candidate's weight, which is 0 when at least half the candidates are unused), estimated once
      from 200,000 simulated examples.
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

from ..errors import ConfigError
from ..models.heads import MLPHead, inverse_sigmoid
from .base import Task, register

MODES = ("classify", "regress")
DEBUG_MODES = ("none", "duplicate_mix", "duplicate_source")


def sample_gamma(shape_k: float, n: int, generator: torch.Generator, device, rounds: int = 8) -> torch.Tensor:
    """Gamma(k, 1) samples drawn from `generator` (torch's own samplers take none), Marsaglia & Tsang 2000.

    All `rounds` proposals per sample are drawn at once and the first accepted one kept, so the host never
    asks the device whether some sample is still pending (a wait per batch on a GPU). Each proposal is
    accepted with probability > 0.95, so a sample has no accepted proposal with probability < 0.05 ** 8
    (4e-11); it then takes d, the distribution's centre, rather than looping.
    """
    g_dev = generator.device
    boost = shape_k < 1.0  # Gamma(k) = Gamma(k + 1) * U^(1/k)
    k = shape_k + 1.0 if boost else shape_k
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    x = torch.randn(rounds, n, generator=generator, device=g_dev)
    u = torch.rand(rounds, n, generator=generator, device=g_dev)
    v = (1.0 + c * x) ** 3
    ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp(min=1e-12)))
    first = ok.long().argmax(dim=0, keepdim=True)  # the first accepted round (0 when none was)
    out = torch.where(ok.any(dim=0), (d * v).gather(0, first)[0], torch.full((n,), d, device=g_dev))
    if boost:
        out = out * torch.rand(n, generator=generator, device=g_dev) ** (1.0 / shape_k)
    return out.to(device)


def sample_beta(a: float, b: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b)."""
    x = sample_gamma(a, n, generator, device)
    y = sample_gamma(b, n, generator, device)
    return x / (x + y)


def regress_chance(n_sources: int, beta: tuple[float, float], debug: str, samples: int = 200_000) -> tuple[float, float]:
    """(1 - MAE of the best constant predictor, mean target) for regress mode, by simulation.

    Slots are shuffled, so every slot's target follows the pooled distribution of one example's n targets;
    the MAE-optimal constant is that distribution's median.
    """
    rng = np.random.default_rng(0)
    w = rng.beta(beta[0], beta[1], samples)
    rows = np.zeros((samples, n_sources))
    rows[:, 0], rows[:, 1] = w, 1 - w
    if debug == "duplicate_mix":
        rows[:, 2] = 1.0
    elif debug == "duplicate_source":
        rows[:, 2] = np.where(rng.random(samples) < 0.5, w, 1 - w)
    pooled = rows.ravel()
    mae = np.abs(pooled - np.median(pooled)).mean()
    return float(1.0 - mae), float(pooled.mean())


class UnmixModel(nn.Module):
    """Scores each candidate against the composite with one shared encoder and one shared MLP.

    The composite and the n candidates go through the encoder as one (B * (n + 1)) batch (a reshape,
    not a loop); each candidate is then scored from [e_mix, e_cand, e_mix * e_cand, |e_mix - e_cand|].
    """

    def __init__(self, encoder: nn.Module, final_bias: float | None = None, hidden: int = 256):
        super().__init__()
        self.encoder = encoder
        self.head = MLPHead(4 * encoder.num_features, 1, hidden=(hidden,), final_bias=final_bias)

    def forward(self, composite, candidates: torch.Tensor | None = None) -> torch.Tensor:
        if candidates is None:  # called with the task's inputs tuple
            composite, candidates = composite
        b, n = candidates.shape[:2]
        images = torch.cat([composite.unsqueeze(1), candidates], dim=1).flatten(0, 1)
        emb = self.encoder(images).view(b, n + 1, -1)
        e_mix, e_cand = emb[:, :1].expand(-1, n, -1), emb[:, 1:]
        pair = torch.cat([e_mix, e_cand, e_mix * e_cand, (e_mix - e_cand).abs()], dim=-1)
        return self.head(pair)[..., 0]  # (B, n); index, not squeeze


@register
class Unmix(Task):
    name = "unmix"

    def __init__(self, *, n_sources: int = 4, beta: tuple = (5.0, 8.0), mode: str = "classify",
                 debug: str = "none", noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if mode not in MODES:
            raise ConfigError(f"unknown unmix mode={mode!r}: use one of {', '.join(MODES)}")
        if debug not in DEBUG_MODES:
            raise ConfigError(f"unknown unmix debug={debug!r}: use one of {', '.join(DEBUG_MODES)}")
        min_n = 2 if debug == "none" else 3  # a debug mode needs a free slot
        if int(n_sources) != n_sources or n_sources < min_n:
            raise ConfigError(f"n_sources must be an integer >= {min_n} (debug={debug!r}), got {n_sources}")
        beta = tuple(float(v) for v in beta)
        if len(beta) != 2 or min(beta) <= 0:
            raise ConfigError(f"beta must be two positive numbers (a, b), got {beta}")
        self.n_sources, self.beta, self.mode, self.debug = int(n_sources), beta, mode, debug
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
        g_dev = generator.device
        rows = torch.arange(b, device=dev)[:, None]
        # n distinct batch images per example, in random order; then which 2 slots to blend (+1 debug slot).
        sources = torch.rand(b, b, generator=generator, device=g_dev).argsort(dim=1)[:, :n].to(dev)
        slots = torch.rand(b, n, generator=generator, device=g_dev).argsort(dim=1).to(dev)
        mixed = slots[:, :2]
        w = sample_beta(*self.beta, b, generator, dev)
        weights = torch.stack([w, 1 - w], dim=1)

        candidates = images[sources]  # (B, n, 3, H, W)
        picked = candidates[rows, mixed]  # (B, 2, 3, H, W)
        composite = (weights.to(images.dtype)[:, :, None, None, None] * picked).sum(dim=1)

        target_values = weights if self.mode == "regress" else torch.ones_like(weights)
        targets = torch.zeros(b, n, device=dev).scatter(1, mixed, target_values)
        debug_slot = torch.full((b,), -1, dtype=torch.long, device=dev)
        if self.debug != "none":
            debug_slot = slots[:, 2]
            if self.debug == "duplicate_mix":
                candidates[rows[:, 0], debug_slot] = composite
                sources[rows[:, 0], debug_slot] = -1
                value = torch.ones(b, device=dev)
            else:  # duplicate_source: copy one of the two blended sources, chosen at random
                which = (torch.rand(b, generator=generator, device=g_dev) < 0.5).long().to(dev)
                copied = mixed.gather(1, which[:, None])[:, 0]
                candidates[rows[:, 0], debug_slot] = candidates[rows[:, 0], copied]
                sources[rows[:, 0], debug_slot] = sources[rows[:, 0], copied]
                value = weights.gather(1, which[:, None])[:, 0]
            if self.mode == "classify":
                value = torch.ones_like(value)
            targets[rows[:, 0], debug_slot] = value

        meta = {"sources": sources, "mixed_slots": mixed, "weights": weights, "debug_slot": debug_slot}
        return (composite, candidates), targets, meta

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return UnmixModel(encoder, final_bias=self.final_bias)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.shape != targets.shape:
            raise ValueError(f"unmix outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ")
        targets = targets.to(outputs.dtype)
        if self.mode == "classify":
            return F.binary_cross_entropy_with_logits(outputs, targets)  # multi-label: one sigmoid per candidate
        return F.mse_loss(outputs, targets)

    def metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.mode == "regress":
            return 1.0 - (outputs - targets).abs().mean()
        return top_k_exact_match(outputs, targets > 0.5)


def top_k_exact_match(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose k highest scores are exactly the k positives (k may differ per row)."""
    k = positive.sum(dim=1, keepdim=True)
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = highest score
    return ((rank < k) == positive).all(dim=1).float().mean()
