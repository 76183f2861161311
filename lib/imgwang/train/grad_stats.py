"""Per-layer gradient magnitudes over an epoch: the quick way to spot dead or exploding layers."""

from __future__ import annotations

import torch
from torch import nn


class GradStats:
    """Accumulates mean and std of |grad| for every weight tensor (ndim >= 2: conv/linear kernels).

    Call `update()` after backward (after unscaling under fp16) and `result()` at the end of the epoch.
    Values stay on the device until `result()`, so the hot loop does not synchronise.
    """

    def __init__(self, model: nn.Module):
        self.params = [(n, p) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
        self._sums: dict[str, torch.Tensor] = {}
        self._steps = 0

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self.params:
            if p.grad is None:  # frozen or unused this step: counts as zero gradient
                continue
            g = p.grad.detach().abs().float()
            s = torch.stack([g.mean(), g.std(correction=0)])
            self._sums[name] = self._sums[name] + s if name in self._sums else s
        self._steps += 1

    def result(self) -> dict[str, dict[str, float]]:
        """{param name: {"mean": .., "std": ..}} in layer order, averaged over the steps seen."""
        out = {}
        for name, _ in self.params:
            s = self._sums.get(name)
            mean, std = (s / max(1, self._steps)).tolist() if s is not None else (0.0, 0.0)
            out[name] = {"mean": mean, "std": std}
        return out
