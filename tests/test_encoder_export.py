"""encoder.pt and encoder.safetensors load into a plain timm model with no key renaming; the lab still reads
encoder files written before the portable format."""

import os

import pytest
import timm
import torch

from imgwang.models.checkpoint import load_encoder, save_encoder
from imgwang.models.encoders import create_encoder


@pytest.fixture(scope="module")
def trained_resnet18():
    torch.manual_seed(0)
    enc = create_encoder("resnet18")
    enc.train()
    with torch.no_grad():
        enc(torch.rand(4, 3, 32, 32))  # BN running statistics away from their defaults: they must travel too
    return enc.eval()


def test_both_files_load_into_timm_create_model_as_they_are(tmp_path, trained_resnet18):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # nothing is downloaded: the weights come from the file
    path = save_encoder(trained_resnet18, tmp_path / "encoder.pt", safetensors_copy=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.pt", "encoder.safetensors"]
    x = torch.rand(2, 3, 32, 32)
    ours = trained_resnet18.forward_features(x)
    for file in (path, tmp_path / "encoder.safetensors"):
        model = timm.create_model("resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(file)),
                                  num_classes=7).eval()
        cfg = timm.data.resolve_data_config({}, model=model)  # timm's own normalisation is the one we apply inside
        mean, std = (torch.tensor(cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        with torch.no_grad():
            assert torch.allclose(model.forward_features((x - mean) / std), ours, atol=1e-5), file.name
            assert model((x - mean) / std).shape == (2, 7)  # a fresh 7-class head on the pretrained body
        bn = model.bn1.running_mean
        assert torch.equal(bn, trained_resnet18.body.bn1.running_mean) and bn.abs().sum() > 0


def test_the_lab_reads_the_portable_files_and_the_older_format(tmp_path, trained_resnet18):
    x = torch.rand(2, 3, 32, 32)
    save_encoder(trained_resnet18, tmp_path / "encoder.pt", safetensors_copy=True)
    torch.save(trained_resnet18.state_dict(), tmp_path / "old.pt")  # the wrapper's names: body.conv1.weight ...
    assert all(k.startswith("body.") for k in torch.load(tmp_path / "old.pt"))
    torch.manual_seed(1)
    fresh = create_encoder("resnet18").eval()
    untrained = {k: v.clone() for k, v in fresh.state_dict().items()}
    for name in ("encoder.pt", "encoder.safetensors", "old.pt"):
        fresh.load_state_dict(untrained)
        assert not torch.allclose(fresh(x), trained_resnet18(x))
        load_encoder(fresh, tmp_path / name)
        assert torch.equal(fresh(x), trained_resnet18(x)), name
