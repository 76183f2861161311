"""How many directions a frozen space uses (RankMe) and what its main ones follow (imgwang.evaluate.directions)."""

import math

import pytest
import torch

from conftest import gen
from imgwang.evaluate.directions import between_class_share, main_directions, rankme


def test_rankme_counts_the_directions_used():
    eye = torch.eye(8) * 3.0  # eight equal singular values
    assert rankme(eye) == pytest.approx(8.0, rel=1e-5)
    one = torch.randn(50, 1, generator=gen(1)) @ torch.randn(1, 8, generator=gen(2))  # rank 1
    assert rankme(one) == pytest.approx(1.0, abs=1e-3)
    x = torch.randn(40, 6, generator=gen(3))  # the paper's formula written out
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum() + 1e-7
    assert rankme(x) == pytest.approx(math.exp(-float((p * p.log()).sum())))


def test_the_main_direction_follows_a_factor_and_the_second_the_class():
    """Dimension 0 spreads widely with a nuisance, dimension 1 less with the class: the first principal direction
    holds most variance, follows the nuisance and not the class; the second separates the classes."""
    n = 400
    labels = torch.arange(n) % 4
    nuisance = torch.randn(n, generator=gen(4))
    features = torch.stack([10 * nuisance, labels.float() + 0.05 * torch.randn(n, generator=gen(5)),
                            0.01 * torch.randn(n, generator=gen(6))], dim=1)
    first, second = main_directions(features, labels, {"exposure": nuisance, "noise": torch.randn(n, generator=gen(7))})
    assert first["variance_share"] > 0.95 and first["factors"]["exposure"] > 0.99 and first["factors"]["noise"] < 0.2
    assert first["class_share"] < 0.05 and second["class_share"] > 0.95


def test_between_class_share_is_eta_squared():
    score = torch.tensor([1.0, 2.0, 3.0, 7.0, 8.0, 9.0], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    between, within = 3 * (2 - 5) ** 2 + 3 * (8 - 5) ** 2, 2 * (1 + 0 + 1)  # about the means 2 and 8
    assert between_class_share(score, labels) == pytest.approx(between / (between + within))
    assert between_class_share(torch.ones(6, dtype=torch.float64), labels) == 0.0
