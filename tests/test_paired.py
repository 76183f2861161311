"""The pretrained kNN against a reference on the same images: McNemar's exact p and a paired t interval
(imgwang.evaluate.paired)."""

import math

import numpy as np
import pytest
from scipy import stats

from imgwang.core.errors import DataError
from imgwang.evaluate.paired import describe_paired, paired_accuracy


def test_only_the_images_scored_differently_decide():
    # 100 images: both right on 40, both wrong on 40, only a right on 15, only b right on 5
    a = np.array([1] * 40 + [0] * 40 + [1] * 15 + [0] * 5, bool)
    b = np.array([1] * 40 + [0] * 40 + [0] * 15 + [1] * 5, bool)
    r = paired_accuracy(a, b)
    assert r["diff"] == pytest.approx(0.10) and r["discordant"] == 20 and r["n"] == 100
    assert r["p_value"] == pytest.approx(2 * stats.binom.cdf(5, 20, 0.5))  # exact two-sided binomial, 0.0414
    share = stats.binomtest(15, 20, 0.5).proportion_ci(0.95, method="exact")  # 0.509 to 0.913 of the 20 are a's
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.2 * (2 * share.low - 1), 0.2 * (2 * share.high - 1)))
    assert 0 < r["ci_low"] < r["diff"] < r["ci_high"]  # p < 0.05 and the interval leaves out 0, as it must
    line = describe_paired(r, "kNN, pretrained against random-init", "val")
    assert line.startswith("kNN, pretrained against random-init: +10.00 points (95% CI +") and "p = 0.041" in line
    assert "20 of 100 val images scored differently" in line


def test_the_interval_leaves_out_zero_exactly_when_p_is_below_five_percent():
    for only_a in range(0, 31):
        a = np.array([1] * only_a + [0] * (30 - only_a) + [1] * 50, bool)
        b = np.array([0] * only_a + [1] * (30 - only_a) + [1] * 50, bool)
        r = paired_accuracy(a, b)
        assert (r["p_value"] < 0.05) == (r["ci_low"] > 0 or r["ci_high"] < 0), (only_a, r)


def test_identical_results_have_p_one_and_no_interval_and_bad_input_is_refused():
    same = np.array([1, 0, 1, 1], bool)
    r = paired_accuracy(same, same)
    assert r["diff"] == 0 and r["p_value"] == 1.0 and math.isnan(r["ci_low"]) and r["discordant"] == 0
    assert "no CI" in describe_paired(r, "kNN", "val")
    with pytest.raises(DataError):
        paired_accuracy([1, 0], [1, 0, 1])
