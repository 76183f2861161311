"""unmix: the composite is exactly the blend the targets name; debug modes; metric, chance; it learns."""

import math

import pytest
import torch

from conftest import assert_overfit, gen, one_torch_thread, smooth_images
from imgwang.core.errors import ConfigError
from imgwang.data.batch import Batch
from imgwang.models import create_encoder
from imgwang.tasks.unmix import Unmix, sample_beta, top_k_exact_match
from imgwang.train.sanity import evaluate_pretext, overfit_one_batch


def blend(images, sources, slots, weights):
    a, b = images[sources[slots[0]]], images[sources[slots[1]]]
    return weights[0] * a + weights[1] * b


@pytest.mark.parametrize("mode", ["classify", "regress"])
def test_composite_is_exactly_the_named_blend(mode):
    images = smooth_images(12, 16, grid=4)
    task = Unmix(n_sources=4, mode=mode)
    (composite, candidates), targets, meta = task.make_batch(images, gen())
    assert composite.shape == (12, 3, 16, 16) and candidates.shape == (12, 4, 3, 16, 16) and targets.shape == (12, 4)
    sources, mixed, weights = meta["sources"], meta["mixed_slots"], meta["weights"]
    assert torch.allclose(weights.sum(dim=1), torch.ones(12)) and torch.all((weights > 0) & (weights < 1))
    assert torch.all(meta["debug_slot"] == -1)
    for i in range(12):
        assert sources[i].unique().numel() == 4  # distinct candidates
        assert all(torch.equal(candidates[i, k], images[sources[i, k]]) for k in range(4))
        named = (targets[i] > 0).nonzero().flatten().tolist()
        assert sorted(named) == sorted(mixed[i].tolist())
        assert torch.allclose(composite[i], blend(images, sources[i], mixed[i], weights[i]), atol=1e-6)
        unused = [k for k in range(4) if k not in named]
        wrong = blend(images, sources[i], [mixed[i, 0], unused[0]], weights[i])
        assert not torch.allclose(composite[i], wrong, atol=1e-3)
        expected = torch.zeros(4)
        expected[mixed[i]] = weights[i] if mode == "regress" else 1.0
        assert torch.allclose(targets[i], expected)


def test_slots_and_weights_are_random_where_they_should_be():
    task = Unmix(n_sources=4)
    _, targets, meta = task.make_batch(smooth_images(64, 8, grid=4), gen(1))
    # Every slot is blended about 2/n of the time: the slot order leaks nothing.
    per_slot = torch.cat([task.make_batch(smooth_images(64, 8, grid=4), gen(s))[1] for s in range(10)]).mean(dim=0)
    assert torch.allclose(per_slot, torch.full((4,), 0.5), atol=0.06)
    w = sample_beta(5.0, 8.0, 20000, gen(2), "cpu")
    assert w.mean().item() == pytest.approx(5 / 13, abs=0.005)
    assert w.var().item() == pytest.approx(5 * 8 / (13 ** 2 * 14), rel=0.05)
    assert sample_beta(0.5, 0.5, 20000, gen(3), "cpu").mean().item() == pytest.approx(0.5, abs=0.01)  # k < 1 path


def test_duplicate_mix_puts_the_composite_among_candidates():
    images = smooth_images(10, 16, grid=4)
    for mode in ("classify", "regress"):
        task = Unmix(n_sources=4, mode=mode, debug="duplicate_mix")
        (composite, candidates), targets, meta = task.make_batch(images, gen(4))
        slot = meta["debug_slot"]
        assert torch.all(slot >= 0) and not torch.any(slot[:, None] == meta["mixed_slots"])
        for i in range(10):
            assert torch.equal(candidates[i, slot[i]], composite[i])
            assert meta["sources"][i, slot[i]] == -1
            assert targets[i, slot[i]] == 1.0
            assert (targets[i] > 0).sum() == 3
    assert task.chance < 1.0


def test_duplicate_source_repeats_one_blended_source():
    images = smooth_images(10, 16, grid=4)
    task = Unmix(n_sources=5, mode="regress", debug="duplicate_source")
    (composite, candidates), targets, meta = task.make_batch(images, gen(5))
    for i in range(10):
        slot, (a, b) = int(meta["debug_slot"][i]), meta["mixed_slots"][i].tolist()
        copied = a if torch.equal(candidates[i, slot], candidates[i, a]) else b
        assert torch.equal(candidates[i, slot], candidates[i, copied]) and slot not in (a, b)
        assert meta["sources"][i, slot] == meta["sources"][i, copied]
        assert targets[i, slot] == targets[i, copied] > 0
        assert torch.allclose(composite[i], blend(images, meta["sources"][i], meta["mixed_slots"][i], meta["weights"][i]), atol=1e-6)
    classify = Unmix(n_sources=5, debug="duplicate_source")
    _, targets, _ = classify.make_batch(images, gen(5))
    assert torch.all(targets.sum(dim=1) == 3) and classify.chance == pytest.approx(1 / math.comb(5, 3))


def test_exact_match_metric_and_chance():
    scores = torch.tensor([[3.0, 2.0, -1.0, 0.0], [3.0, -2.0, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
    positive = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    assert top_k_exact_match(scores, positive).item() == pytest.approx(2 / 3)
    assert Unmix(n_sources=4).chance == pytest.approx(1 / 6)
    # Regress chance is the metric of the best constant predictor: check it on real batches.
    task = Unmix(n_sources=4, mode="regress")
    targets = torch.cat([task.make_batch(smooth_images(64, 8, grid=4), gen(s))[1] for s in range(20)])
    assert task.metric(torch.zeros_like(targets), targets).item() == pytest.approx(task.chance, abs=0.01)
    assert task.metric(torch.full_like(targets, 0.3), targets) < task.chance


def test_random_scores_sit_at_chance():
    task = Unmix(n_sources=4)
    targets = torch.cat([task.make_batch(smooth_images(64, 8, grid=4), gen(s))[1] for s in range(20)])
    scores = torch.randn(targets.shape, generator=gen(9))
    assert task.metric(scores, targets).item() == pytest.approx(task.chance, abs=0.04)


def test_model_encodes_everything_in_one_call():
    task = Unmix(n_sources=4)
    enc = create_encoder("tinyconv")
    model = task.build_model(enc)
    assert model.encoder is enc
    calls = []
    enc.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    inputs, targets, _ = task.make_batch(smooth_images(6, 16, grid=4), gen())
    out = model(inputs)
    assert out.shape == (6, 4) and calls == [6 * 5]
    model.eval()
    assert torch.equal(model(inputs), model(*inputs))
    assert model((inputs[0][:1], inputs[1][:1])).shape == (1, 4)  # a batch of one stays (1, n)
    with pytest.raises(ValueError):
        task.loss(out[:, :, None], targets)


def test_prepare_and_errors():
    batch = Batch(smooth_images(6, 16, grid=4), torch.full((6,), -1), torch.arange(50, 56))
    _, _, meta = Unmix(n_sources=4, debug="duplicate_mix").prepare(batch, gen())
    expected = torch.where(meta["sources"] >= 0, meta["sources"] + 50, -1)
    assert torch.equal(meta["indices"], expected)
    with pytest.raises(ConfigError, match="at least 4"):
        Unmix(n_sources=4).make_batch(smooth_images(3, 16, grid=4), gen())
    for kw in (dict(mode="rank"), dict(debug="both"), dict(n_sources=1), dict(n_sources=2, debug="duplicate_mix"),
               dict(beta=(0.0, 1.0))):
        with pytest.raises(ConfigError):
            Unmix(**kw)


@pytest.fixture(scope="module")
def overfit():
    with one_torch_thread():
        task = Unmix(n_sources=4)
        yield task, overfit_one_batch(task, smooth_images(16, 32, grid=4), steps=120, lr=3e-3, seed=0)


def test_overfits_one_batch(overfit):
    assert_overfit(overfit[1])


def test_noise_switch_brings_metric_to_chance(overfit):
    task, result = overfit
    noisy = Unmix(n_sources=4, noise_p=1.0)
    batches = [smooth_images(32, 32, seed=s, grid=4) for s in range(16)]
    on_noise = evaluate_pretext(noisy, result["model"], batches, seed=1)
    assert abs(on_noise["metric"] - noisy.chance) < 0.08
    seen = evaluate_pretext(task, result["model"], [smooth_images(16, 32, grid=4)], seed=0)
    assert seen["metric"] >= 0.9
    # The memorised batch itself (same seed: same targets), inputs replaced by noise: the memory is gone.
    hidden = evaluate_pretext(noisy, result["model"], [smooth_images(16, 32, grid=4)], seed=0)
    assert hidden["metric"] <= noisy.chance + 0.3
