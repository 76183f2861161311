"""Is one set of frozen features' kNN above another's on the same scoring images, beyond those images' noise?

Both are scored on the same images, so the comparison is paired and only the images they score differently carry
evidence: McNemar's exact test (a two-sided binomial test on those images, chance 1/2) gives the p-value. The
confidence interval of the accuracy difference comes from the same test: the Clopper-Pearson interval of the share
of those images that a gets right, times their share of all images, so the interval leaves out 0 exactly when
p < 0.05 (a t interval over the per-image differences can disagree with the exact p near the edge). Beating two
references (random init and raw pixels) is an intersection-union claim: each test at its
own level, no multiplicity correction. It speaks for this scoring set and these encoders only; another
pretraining seed can move kNN by more (make pipeline SEEDS=3 measures that: docs/evaluation.md).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..core.errors import DataError
from .stats import p_text


def paired_accuracy(correct_a, correct_b, confidence: float = 0.95) -> dict:
    """Accuracy of a minus b on the same images -> {"diff", "ci_low", "ci_high", "p_value", "n", "discordant"}.
    With no image scored differently p is 1 and there is no interval (NaN)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise DataError(f"paired accuracy needs two equal-length lists of per-image results, got {a.shape} and {b.shape}")
    only_a, discordant, n = int((a & ~b).sum()), int((a != b).sum()), int(a.size)
    out = {"diff": float(a.mean() - b.mean()), "ci_low": math.nan, "ci_high": math.nan, "p_value": 1.0, "n": n,
           "discordant": discordant}
    if discordant:
        test = stats.binomtest(only_a, discordant, 0.5)
        share = test.proportion_ci(confidence, method="exact")  # of the discordant images, a's
        out.update(p_value=float(test.pvalue), ci_low=discordant / n * (2 * share.low - 1),
                   ci_high=discordant / n * (2 * share.high - 1))
    return out


def describe_paired(result: dict, what: str, scored_on: str) -> str:
    """One line: the difference in points, its CI and p, and how many images decided it."""
    p = result["p_value"]
    ci = ("no CI" if math.isnan(result["ci_low"])
          else f"95% CI {100 * result['ci_low']:+.2f} to {100 * result['ci_high']:+.2f}")
    return (f"{what}: {100 * result['diff']:+.2f} points ({ci}; McNemar exact {p_text(p)}; "
            f"{result['discordant']} of {result['n']} {scored_on} images scored differently)")
