"""Random draws for task batches: from the task's generator (on its own device), moved to the batch's device.

Every draw takes the generator explicitly, so a batch is deterministic given the generator's state; bounds
are Python numbers, so nothing is built from host data and the host never waits on the GPU.
"""

from __future__ import annotations

import math

import torch


def uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    """U[0, 1) of `shape` on `device`."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def randint(high: int, shape, generator: torch.Generator, device) -> torch.Tensor:
    """Integers in [0, high) on `device`."""
    return (uniform(shape, generator, device) * high).long().clamp(max=high - 1)


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
