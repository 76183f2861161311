"""Encoders, checkpoints, heads, losses and the transfer classifier."""

import copy
import math
import os

import pytest
import torch
from torch import nn

from imgwang.core.errors import ConfigError, ImgwangError
from imgwang.models import (
    Classifier,
    ClassifierHead,
    CosineSimilarityHead,
    DotProductHead,
    MLPHead,
    contrastive_loss,
    create_encoder,
    inverse_sigmoid,
    list_archs,
    load_encoder,
    nt_xent_loss,
    projection_head,
    save_encoder,
)


def images(b=4, size=32, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- encoders ----------------------------------------------------------------------------------

def test_tinyconv_maps_pooling_and_normalisation():
    enc = create_encoder("tinyconv").eval()
    x = images()
    maps = enc.forward_features(x)
    assert maps.shape == (4, enc.num_features, 2, 2) and enc.num_features == 128 and enc.arch == "tinyconv"
    assert torch.allclose(enc(x), maps.mean(dim=(2, 3)))
    # The encoder normalises inside: its body sees (x - ImageNet mean) / std, not x.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(maps, enc.body.forward_features((x - mean) / std), atol=1e-6)
    assert not torch.allclose(maps, enc.body.forward_features(x))
    # ...with statistics that are not weights: absent from the state dict.
    assert not any(k in ("mean", "std") for k in enc.state_dict())


def test_timm_encoder_reads_num_features_from_model():
    enc = create_encoder("resnet18").eval()
    assert enc.num_features == enc.body.num_features == 512
    with torch.no_grad():
        assert enc.forward_features(images(2, 64)).shape == (2, 512, 2, 2)
        assert enc(images(1, 64)).shape == (1, 512)  # a batch of one stays a batch


def test_unknown_arch_is_one_clear_line_with_suggestions():
    with pytest.raises(ConfigError) as err:
        create_encoder("xresnet34")
    msg = str(err.value)
    assert "ARCH='xresnet34'" in msg and "not a timm model name" in msg and "resnet34" in msg and "\n" not in msg
    with pytest.raises(ConfigError):
        create_encoder("")


def test_list_archs():
    archs = list_archs()
    assert archs[0] == "tinyconv" and "resnet18" in archs and "resnet34d" in archs


# --- checkpoints -------------------------------------------------------------------------------

def trained_tinyconv(seed):
    torch.manual_seed(seed)
    enc = create_encoder("tinyconv")
    enc.train()
    enc(images(8))  # move BatchNorm running statistics away from their defaults
    return enc.eval()


def test_encoder_round_trip_restores_weights_and_bn_stats(tmp_path):
    a, b = trained_tinyconv(0), trained_tinyconv(1)
    x = images(3)
    assert not torch.allclose(a(x), b(x))
    path = save_encoder(a, tmp_path / "sub" / "encoder.pt")
    load_encoder(b, path)
    assert torch.equal(a(x), b(x))
    assert os.listdir(tmp_path / "sub") == ["encoder.pt"]  # no temporary file left behind


def test_mismatched_state_dict_raises_and_loads_nothing(tmp_path):
    enc = trained_tinyconv(0)
    state = enc.state_dict()
    dropped = sorted(state)[0]
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    cases = {
        "missing": ({k: v for k, v in state.items() if k != dropped}, dropped),
        "unexpected": ({**state, "head.weight": torch.zeros(2)}, "head.weight"),
    }
    for name, (bad, key) in cases.items():
        torch.save(bad, tmp_path / f"{name}.pt")
        with pytest.raises(ImgwangError, match=name) as err:
            load_encoder(enc, tmp_path / f"{name}.pt")
        assert key in str(err.value)
    save_encoder(create_encoder("resnet18"), tmp_path / "other_arch.pt")
    with pytest.raises(ImgwangError, match="tinyconv"):
        load_encoder(enc, tmp_path / "other_arch.pt")
    # Same keys, wrong shape (e.g. saved with other widths).
    state_bad_shape = dict(state)
    state_bad_shape["body.layers.0.weight"] = torch.zeros(5, 3, 3, 3)
    torch.save(state_bad_shape, tmp_path / "shape.pt")
    with pytest.raises(ImgwangError, match="shape"):
        load_encoder(enc, tmp_path / "shape.pt")
    # No partial load happened.
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_load_refuses_missing_and_unsafe_files(tmp_path):
    enc = create_encoder("tinyconv")
    with pytest.raises(ImgwangError, match="no encoder checkpoint"):
        load_encoder(enc, tmp_path / "nope.pt")
    torch.save({"x": nn.Linear(2, 2)}, tmp_path / "pickled_module.pt")  # weights_only=True refuses modules
    with pytest.raises(ImgwangError, match="cannot read"):
        load_encoder(enc, tmp_path / "pickled_module.pt")


# --- heads -------------------------------------------------------------------------------------

def test_inverse_sigmoid():
    for p in (0.1, 0.5, 0.83):
        assert math.isclose(torch.sigmoid(torch.tensor(inverse_sigmoid(p))).item(), p, rel_tol=1e-6)
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ConfigError):
            inverse_sigmoid(bad)


def test_mlp_head_outputs_logits_with_final_bias():
    head = MLPHead(8, 1, final_bias=inverse_sigmoid(0.9)).eval()
    with torch.no_grad():
        head.out.weight.zero_()
    out = head(torch.randn(5, 8))
    # A raw logit (no activation applied): sigmoid of it gives back the rate, and it is outside [0, 1].
    assert torch.allclose(out, torch.full((5, 1), math.log(9.0)), atol=1e-6)
    assert torch.allclose(torch.sigmoid(out), torch.full((5, 1), 0.9))


def test_mlp_head_batchnorm_on_feature_dim_over_all_rows():
    torch.manual_seed(0)
    head = MLPHead(6, 2, hidden=(5,)).train()
    bn = head.hidden[1]
    assert isinstance(bn, nn.BatchNorm1d) and bn.num_features == 5
    twin = copy.deepcopy(head)
    x = torch.randn(4, 3, 6)  # batch x candidates x features
    out = head(x)
    assert out.shape == (4, 3, 2)
    # Same as running the 12 rows as one 2-D batch: statistics are per feature over every row.
    assert torch.allclose(out.reshape(12, 2), twin(x.reshape(12, 6)), atol=1e-6)
    expected_running_mean = 0.1 * head.hidden[0](x.reshape(12, 6)).mean(dim=0)
    assert torch.allclose(bn.running_mean, expected_running_mean, atol=1e-6)


def test_similarity_heads_known_values():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    c = torch.tensor([[[2.0, 0.0], [0.0, 3.0]], [[0.0, 1.0], [4.0, 0.0]]])
    assert torch.equal(DotProductHead()(q, c), torch.tensor([[2.0, 0.0], [2.0, 0.0]]))
    cos = CosineSimilarityHead(temperature=0.1)(q, c)
    assert torch.allclose(cos, torch.tensor([[10.0, 0.0], [10.0, 0.0]]))


def test_concat_pool_classifier_head():
    head = ClassifierHead(4, 3, dropout=0.25, hidden=16)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["AdaptiveConcatPool2d", "BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    maps = torch.arange(16.0).view(1, 4, 2, 2)
    pooled = head[0](maps)
    assert torch.equal(pooled, torch.tensor([[1.5, 5.5, 9.5, 13.5, 3.0, 7.0, 11.0, 15.0]]))


def test_batch_of_one_through_every_head():
    x, maps = torch.randn(1, 8), torch.randn(1, 8, 2, 2)
    heads_eval = {  # heads with BatchNorm: a single example only makes sense at inference
        "mlp": (MLPHead(8, 1), (x,), (1, 1)),
        "mlp3": (MLPHead(8, 3), (x,), (1, 3)),
        "classifier": (ClassifierHead(8, 5), (maps,), (1, 5)),
        "projection": (projection_head(8, 4, hidden=16), (x,), (1, 4)),
        "dot": (DotProductHead(), (x, torch.randn(1, 3, 8)), (1, 3)),
        "cosine": (CosineSimilarityHead(), (x, torch.randn(1, 3, 8)), (1, 3)),
        "candidates": (MLPHead(8, 1), (torch.randn(1, 3, 8),), (1, 3, 1)),
    }
    for name, (head, args, shape) in heads_eval.items():
        assert head.eval()(*args).shape == shape, name
    # Without BatchNorm a batch of one trains too.
    assert MLPHead(8, 1, batchnorm=False).train()(x).shape == (1, 1)


# --- losses ------------------------------------------------------------------------------------

def test_contrastive_loss_known_values():
    d = torch.tensor([0.0, 0.0, 0.5, 2.0, 0.4])
    same = torch.tensor([1, 0, 1, 0, 0])
    # same: d^2; different: max(0, margin - d)^2
    per_pair = torch.tensor([0.0, 1.0, 0.25, 0.0, 0.36])
    assert torch.isclose(contrastive_loss(d, same), per_pair.mean())
    assert torch.isclose(contrastive_loss(d, same, margin=2.0), torch.tensor([0.0, 4.0, 0.25, 0.0, 2.56]).mean())
    # One anchor against many: (B, K).
    dk, sk = d.view(1, 5).repeat(2, 1), same.view(1, 5).repeat(2, 1)
    assert torch.isclose(contrastive_loss(dk, sk), per_pair.mean())
    with pytest.raises(ValueError):
        contrastive_loss(d, same[:3])


def test_nt_xent_matches_lightly_and_prefers_matched_pairs():
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(8, 16, generator=g)
    z1 = z0 + 0.1 * torch.randn(8, 16, generator=g)
    for t in (0.5, 0.1):
        assert torch.isclose(nt_xent_loss(z0, z1, temperature=t), NTXentLoss(temperature=t)(z0, z1), atol=1e-5)
        far = torch.randn(8, 16, generator=g)  # a model that learned nothing
        assert torch.isclose(nt_xent_loss(z0, far, temperature=t), NTXentLoss(temperature=t)(z0, far), atol=1e-5)
    shuffled = z1[torch.roll(torch.arange(8), 1)]
    assert nt_xent_loss(z0, z1) < nt_xent_loss(z0, shuffled) - 1.0


# --- classifier --------------------------------------------------------------------------------

def test_classifier_head_gives_logits_and_trains_the_encoder():
    enc = create_encoder("tinyconv")
    model = Classifier(enc, 5)
    assert model.encoder is enc
    logits = model(images(4))
    assert logits.shape == (4, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert enc.body.layers[0].weight.grad.abs().sum() > 0
    assert model.eval()(images(1)).shape == (1, 5)
    with pytest.raises(ConfigError):
        Classifier(create_encoder("tinyconv"), 1)
