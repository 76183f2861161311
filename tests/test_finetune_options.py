"""The leaderboard recipe's training options: ranger (Lookahead over RAdam), LARS, flat-then-cosine, Adam, label
smoothing and head dropout, their checks, and an exact resume with ranger's slow weights."""

import pytest
import torch
from test_train_loop import TinyNet, make_world, quick_fit, single_thread  # noqa: F401  (autouse fixture)
from torch import nn

from imgwang.core.errors import ConfigError
from imgwang.evaluate.objective import Classification
from imgwang.models.encoders import create_encoder
from imgwang.stages.resolve import resolve
from imgwang.stages.transfer import build_classifier
from imgwang.train import TrainingInterrupted, make_optimizer, make_scheduler
from imgwang.train.schedule import FLAT_COS_FINAL


def lrs_over(kind, total, **kw):
    w = nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.SGD([{"params": [w], "lr": 0.1}, {"params": [nn.Parameter(torch.zeros(2))], "lr": 1.0}], lr=0.1)
    sched = make_scheduler(opt, kind, total_steps=total, **kw)
    out = []
    for _ in range(total):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out, [g["lr"] for g in opt.param_groups]


def test_flat_cos_holds_each_peak_then_anneals_to_a_hundred_thousandth():
    lrs, after = lrs_over("flat_cos", 100, flat_frac=0.75)
    assert all(row == [0.1, 1.0] for row in lrs[:75])  # flat at each group's own peak
    tail = [row[0] for row in lrs[75:]]
    assert tail[0] == pytest.approx(0.1) and all(a > b for a, b in zip(tail, tail[1:]))
    assert after[0] == pytest.approx(0.1 * FLAT_COS_FINAL) and after[1] == pytest.approx(FLAT_COS_FINAL)
    half, _ = lrs_over("flat_cos", 100, flat_frac=0.5)  # the entry's pretraining: flat for half
    assert half[49][0] == 0.1 and half[50][0] == pytest.approx(0.1) and half[51][0] < 0.1
    assert half[75][0] == pytest.approx(0.05, rel=1e-3)  # halfway down the cosine, half the peak
    for bad in (1.0, -0.1, "x"):
        with pytest.raises(ConfigError, match="flat_frac"):
            lrs_over("flat_cos", 10, flat_frac=bad)


def quadratic_grads(params, target):
    loss = sum(((p - target) ** 2).sum() for p in params)
    loss.backward()


def test_ranger_is_lookahead_over_radam_with_the_entrys_settings():
    """RAdam steps; every sixth step pulls the weights halfway back to the slow weights (k 6, alpha 0.5).
    timm's slow weights start at the first sync (step 6), so the first pull-back is at step 12."""
    model = nn.Sequential(nn.Linear(3, 4))  # no .encoder: every parameter is a head parameter
    ranger = make_optimizer(model, "ranger", lr=1e-2, weight_decay=1e-2)
    twin = nn.Sequential(nn.Linear(3, 4))
    twin.load_state_dict(model.state_dict())
    radam = torch.optim.RAdam([{"params": [twin[0].weight], "weight_decay": 1e-2}, {"params": [twin[0].bias], "weight_decay": 0.0}],
                              lr=1e-2, betas=(0.95, 0.99), eps=1e-4, decoupled_weight_decay=True)
    group = ranger.param_groups[0]
    assert group["betas"] == (0.95, 0.99) and group["eps"] == 1e-4 and group["decoupled_weight_decay"]
    assert type(ranger).__name__ == "Lookahead" and group["lookahead_k"] == 6 and group["lookahead_alpha"] == 0.5
    for step in range(1, 13):
        for opt, m in ((ranger, model), (radam, twin)):
            opt.zero_grad()
            quadratic_grads(list(m.parameters()), 1.0)
            opt.step()
        if step < 12:  # fast weights follow RAdam exactly (the sync at step 6 only records the slow weights)
            assert all(torch.allclose(a, b) for a, b in zip(model.parameters(), twin.parameters())), step
        if step == 6:
            slow = [p.detach().clone() for p in model.parameters()]
    for p, s, fast in zip(model.parameters(), slow, twin.parameters()):
        assert not torch.allclose(p, fast) and torch.allclose(p, s + 0.5 * (fast - s), atol=1e-7)


def test_adam_couples_weight_decay_and_adamw_does_not():
    """With a zero loss gradient, Adam's L2 term becomes the gradient (a step of ~lr against the sign); AdamW
    only shrinks the weight by lr * wd."""
    steps = {}
    for kind in ("adam", "adamw"):
        w = nn.Parameter(torch.full((2, 2), 2.0))
        opt = make_optimizer(nn.ParameterList([w]), kind, lr=0.1, weight_decay=0.01)
        w.grad = torch.zeros_like(w)
        opt.step()
        steps[kind] = (2.0 - w.detach()).mean().item()
    assert steps["adam"] == pytest.approx(0.1, rel=1e-3) and steps["adamw"] == pytest.approx(0.1 * 0.01 * 2.0, rel=1e-3)
    with pytest.raises(KeyError, match="lamb"):  # names are checked once, with the stage's configuration
        make_optimizer(TinyNet(), "lamb", 1e-3, 0.0)


def test_lars_steps_a_kernel_by_its_trust_ratio_and_a_bias_by_plain_sgd():
    """LARS (BYOL's and SwAV's ResNet optimizer): a decayed kernel moves lr * 1e-3 * |w| (the gradient's
    own size drops out); a bias, which takes no weight decay, moves lr * its gradient, as in SGD."""
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.bias.zero_()
    opt = make_optimizer(layer, "lars", lr=2.0, weight_decay=1e-6)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.weight.grad = torch.full_like(layer.weight, 40.0)  # huge against the weight: LARS scales it away
    layer.bias.grad = torch.full_like(layer.bias, 0.25)
    opt.step()
    moved = (w0 - layer.weight.detach()).norm().item()
    assert moved == pytest.approx(2.0 * 1e-3 * w0.norm().item(), rel=1e-4)
    assert torch.allclose(b0 - layer.bias.detach(), torch.full((3,), 2.0 * 0.25))


def run(checkpoint_dir, **kw):
    model, obj, train, val = make_world()
    kw = {"epochs": 4, "lr": 3e-2, "device": "cpu", "progress": False, "checkpoint_dir": checkpoint_dir,
          "optimizer": "ranger", "schedule": "flat_cos", "weight_decay": 1e-2, **kw}
    return model, quick_fit(model, obj, train, val, **kw)


def test_ranger_with_flat_cos_learns_and_resumes_exactly(tmp_path):
    """The slow weights and Lookahead's step count live in last.pt: a resumed run ends where an
    uninterrupted one does (4 batches an epoch, so the 6-step sync falls inside epochs). RAdam's
    rectification warms up over ~200 steps (2 / (1 - 0.99)), so 16 steps only start to learn."""
    model, history = run(tmp_path / "whole")
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert history[0]["lr"] == pytest.approx(3e-2) and history[-1]["lr"] < 3e-2  # flat, then annealed

    def stop_after_2(row):
        if row["epoch"] == 2:
            raise TrainingInterrupted(2)

    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "cut", on_epoch_end=stop_after_2)
    resumed, rest = run(tmp_path / "cut", resume=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    assert [r["val_loss"] for r in rest] == [r["val_loss"] for r in history]
    with pytest.raises(ConfigError, match="flat_frac"):  # a resume must keep the schedule it started with
        run(tmp_path / "cut", resume=True, flat_frac=0.5)


def test_options_fill_defaults_and_refuse_bad_values():
    common = {"data": "sample", "arch": "tinyconv", "device": "cpu", "from_version": "none"}
    defaults = resolve("transfer", common)
    assert (defaults["optimizer"], defaults["schedule"], defaults["label_smoothing"], defaults["head_dropout"]) == (
        "adamw", "onecycle", 0.0, 0.25)
    assert resolve("pretrain", common)["pretrain_on_val"] is False
    assert resolve("pretrain", {**common, "pretrain_on_val": "true"})["pretrain_on_val"] is True
    given = resolve("transfer", {**common, "optimizer": "ranger", "schedule": "flat_cos", "label_smoothing": "0.1"})
    assert given["label_smoothing"] == 0.1 and given["head_dropout"] == 0.25
    bad = [({"optimizer": "lamb"}, "optimizer"), ({"schedule": "step"}, "schedule"), ({"flat_frac": 1.5}, "flat_frac"),
           ({"weight_decay": -1}, "weight_decay"), ({"label_smoothing": 1.0}, "label_smoothing"),
           ({"head_dropout": "lots"}, "head_dropout"), ({"pretrain_on_val": "maybe"}, "pretrain_on_val")]
    for cfg, name in bad:
        with pytest.raises(ConfigError, match=name):
            resolve("pretrain" if name == "pretrain_on_val" else "transfer", {**common, **cfg})


def test_head_dropout_and_label_smoothing_reach_the_model_and_the_loss():
    model = build_classifier("tinyconv", 5, None, head_dropout=0.5)
    assert [m.p for m in model.head if isinstance(m, nn.Dropout)] == [0.25, 0.5]  # fastai's ps=0.5 head
    assert create_encoder("tinyconv").num_features == model.encoder.num_features
    logits, target = torch.tensor([[4.0, 0.0, 0.0, 0.0, 0.0]]), torch.tensor([0])
    plain, smooth = Classification(5).loss(logits, target), Classification(5, label_smoothing=0.1).loss(logits, target)
    expected = 0.9 * torch.nn.functional.cross_entropy(logits, target) - 0.1 * torch.log_softmax(logits, 1).mean()
    assert smooth.item() == pytest.approx(expected.item()) and smooth > plain
