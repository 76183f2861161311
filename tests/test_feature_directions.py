"""How many directions a frozen space uses (RankMe) and what its main ones follow (imgwang.evaluate.directions)."""

import math
import re

import pytest
import torch

from conftest import gen
from imgwang.evaluate.directions import (
    between_class_share,
    describe_directions,
    directions_of,
    main_directions,
    plot_directions,
    rankme,
)


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


def test_the_spread_line_and_figure_say_how_much_of_the_spread_is_class(close_figures):
    """A space whose widest direction is a nuisance: direction 1 holds most of the spread and almost none of it
    between classes; the second, the class, is dark in the figure."""
    n = 200
    labels = torch.arange(n) % 4
    features = torch.cat([10 * torch.randn(n, 1, generator=gen(8)), labels.float()[:, None] * 2,
                          0.1 * torch.randn(n, 14, generator=gen(9))], dim=1)
    spread = directions_of(features, labels)
    assert spread["dim"] == 16 and len(spread["directions"]) == 10 and 1 < spread["rankme"] < 16
    line = describe_directions("pretrained", spread)
    assert line.startswith("pretrained: RankMe ") and " of 16 dimensions; direction 1 holds 9" in line
    first = re.search(r"direction 1 holds (\d+)% of the spread \((\d+)% of it between classes\); the first 10 hold 100%", line)
    assert first and int(first[1]) > 90 and int(first[2]) < 6  # a nuisance: about chance's 3 / 199
    fig = plot_directions({"pretrained": spread, "random": directions_of(torch.randn(n, 16, generator=gen(10)), labels)})
    left, right = fig.axes
    assert len(left.patches) == 2 * 10 and left.get_title().startswith("pretrained: RankMe")
    dark = [bar.get_height() for bar in left.patches[10:]]  # the between-class part of each direction
    assert dark[1] > 0.9 * left.patches[1].get_height() and dark[0] < 0.05 * left.patches[0].get_height()
