"""unmix's head and loss choices: dot and cosine scores, Hadsell's contrastive loss; each one learns."""

import math

import pytest
import torch
from torch import nn

from conftest import assert_overfit, one_torch_thread, smooth_images
from imgwang.core.errors import ConfigError
from imgwang.models.unmix import UnmixModel
from imgwang.tasks.unmix import Unmix
from imgwang.train.sanity import overfit_one_batch


class MeanColour(nn.Module):
    """A stand-in encoder whose embedding is the image's mean colour, so scores can be worked out by hand."""

    num_features = 3

    def forward(self, x):
        return x.mean(dim=(2, 3))


def flat(*colours):
    return torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, -1, 4, 4)


@pytest.mark.parametrize("head,expected", [("dot", [1.0, 0.0, 1.0]), ("cosine", [10.0, 0.0, 10 / math.sqrt(2)])])
def test_dot_and_cosine_heads_score_the_composite_against_each_candidate(head, expected):
    model = UnmixModel(MeanColour(), head, temperature=0.1)
    model.projector = nn.Identity()  # the embeddings themselves, to compare with hand-worked values
    composite = flat((1, 0, 0))
    candidates = flat((1, 0, 0), (0, 1, 0), (1, 1, 0))[None]
    scores = model((composite, candidates))
    assert scores.shape == (1, 3)
    assert torch.allclose(scores, torch.tensor([expected]), atol=1e-5)


def test_contrastive_loss_is_hadsell_on_the_distance_between_unit_projections():
    task = Unmix(n_sources=3, head="cosine", loss="contrastive")
    cos = torch.tensor([[0.5, 0.875, -0.5]])  # d = sqrt(2 - 2 cos) = 1, 0.5, sqrt(3)
    same = torch.tensor([[1.0, 0.0, 0.0]])
    # same pair: d^2 = 1; different pairs: max(0, 1 - d)^2 = 0.25 and 0
    assert task.loss(cos / 0.1, same).item() == pytest.approx((1 + 0.25 + 0) / 3, abs=1e-5)
    assert task.loss(torch.tensor([[10.0, -10.0, -10.0]]), same).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("kw,match", [
    (dict(head="mlp"), "unknown unmix head='mlp'"),
    (dict(loss="hinge"), "unknown unmix loss='hinge'"),
    (dict(loss="contrastive"), "head=cosine"),  # the pair head's logit is no distance
    (dict(loss="contrastive", head="dot"), "head=cosine"),  # a dot product alone gives no distance
    (dict(loss="contrastive", head="cosine", mode="regress"), "mode=classify"),
])
def test_combinations_without_meaning_are_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        Unmix(**kw)


@pytest.mark.parametrize("kw", [dict(head="dot"), dict(head="cosine"), dict(head="cosine", loss="contrastive"),
                                dict(head="cosine", mode="regress")], ids=str)
def test_each_choice_overfits_one_batch_and_its_metric_rises(kw):
    task, images = Unmix(n_sources=4, **kw), smooth_images(16, 16, grid=4)
    with one_torch_thread():
        before = overfit_one_batch(task, images, steps=0, seed=0)  # the same initial model, untrained
        after = overfit_one_batch(task, images, steps=60, lr=3e-3, seed=0)
    assert_overfit(after)
    assert after["train_metric"] > before["train_metric"]
