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
    d = a.astype(float) - b.astype(float)
    half = stats.t.ppf(0.975, 99) * d.std(ddof=1) / math.sqrt(100)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.10 - half, 0.10 + half))
    line = describe_paired(r, "kNN, pretrained against random-init", "val")
    assert line.startswith("kNN, pretrained against random-init: +10.00 points (95% CI +") and "p = 0.041" in line
    assert "20 of 100 val images scored differently" in line


def test_identical_results_have_p_one_and_no_interval_and_bad_input_is_refused():
    same = np.array([1, 0, 1, 1], bool)
    r = paired_accuracy(same, same)
    assert r["diff"] == 0 and r["p_value"] == 1.0 and math.isnan(r["ci_low"]) and r["discordant"] == 0
    assert "no CI" in describe_paired(r, "kNN", "val")
    with pytest.raises(DataError):
        paired_accuracy([1, 0], [1, 0, 1])
