"""Is a difference of mean accuracies more than noise? Welch's t-test, Holm's correction, runs needed.

Welch's test does not assume both sides share a variance; its degrees of freedom come from the
Welch–Satterthwaite equation, so with 3 runs a side it has about 4 degrees of freedom (a t, not a normal:
a fixed "two standard errors" cut-off lets pure noise through about 12% of the time).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05


def welch(a, b, confidence: float = 0.95) -> dict:
    """Difference of means a - b with its confidence interval and the two-sided Welch p-value.

    -> {"diff", "ci_low", "ci_high", "p_value", "df"}; every entry but diff is NaN with fewer than two
    values on a side, or no spread on either side (nothing to test with).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("welch needs at least one value on each side")
    out = {"diff": float(a.mean() - b.mean()), "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "df": math.nan}
    if len(a) < 2 or len(b) < 2 or (a.var() == 0 and b.var() == 0):
        return out
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(res.pvalue), df=float(res.df))
    return out


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (same order; NaN stays NaN, uncounted).

    Sorted ascending, the i-th smallest of m is multiplied by (m - i), then made non-decreasing and capped
    at 1: it keeps the chance of any false "beyond noise" among the m at most alpha.
    """
    p = [float(v) for v in p_values]
    tested = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m, running, out = len(tested), 0.0, list(p)
    for rank, (v, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * v))
        out[i] = running
    return out


def holm_levels(p_values, alpha: float = ALPHA) -> list[float]:
    """The confidence level of a CI consistent with Holm's decision on each p-value (same order; NaN stays NaN).

    Holm tests the i-th smallest of m p-values (i from 0) at alpha / (m - i) and stops at the first it cannot
    reject; every later one is judged at that step's level too. A two-sided CI at level 1 - alpha / (m - step)
    of the step that decided a comparison then excludes 0 exactly when its Holm-adjusted p is below alpha: a
    rejected one was tested at its own step and p < alpha / (m - i); one after the stop has p at least that of
    the stopped one. With one test it is the plain 1 - alpha. These intervals match Holm's words; unlike
    Bonferroni's 1 - alpha / m for all, they are not simultaneous intervals for every difference at once.
    """
    p = [float(v) for v in p_values]
    tested = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m, out, stop = len(tested), [math.nan] * len(p), None
    for rank, (v, i) in enumerate(tested):
        if stop is None and not v < alpha / (m - rank):
            stop = rank  # Holm stops here: this one and all after are not rejected
        out[i] = 1 - alpha / (m - (rank if stop is None else stop))
    return out


def runs_needed(diff: float, std: float, alpha: float = ALPHA, power: float = 0.8, most: int = 100) -> int | None:
    """Runs per side for a two-sided t-test to detect `diff` with the given power when each run has
    standard deviation `std` (noncentral t). None when there is no spread to plan with or more than `most`."""
    if not (std > 0) or not math.isfinite(std) or diff == 0 or not math.isfinite(diff):
        return None
    for n in range(2, most + 1):
        df = 2 * n - 2
        ncp = abs(diff) / (std * math.sqrt(2 / n))
        t = stats.t.ppf(1 - alpha / 2, df)
        if stats.nct.sf(t, df, ncp) + stats.nct.cdf(-t, df, ncp) >= power:
            return n
    return None


def sample_std(values) -> float:
    """Sample standard deviation (ddof=1); NaN for a single value (one run measures no spread)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def pooled_std(groups) -> float:
    """Spread between repeats within groups (e.g. fine-tunings of one encoder): the root of the
    df-weighted mean of each group's sample variance; NaN when no group has two values."""
    num = sum((len(g) - 1) * float(np.var(g, ddof=1)) for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(num / dof) if dof else math.nan


def p_text(p: float) -> str:
    """A p-value as the verdicts and the paired kNN comparison write it."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"
