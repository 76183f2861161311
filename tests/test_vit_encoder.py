"""Vision transformers (fixed-size timm models) as encoders: built for SIZE with dynamic_img_size, they take
multi-crop's smaller views; their weights load at another SIZE as timm loads them; dino pretrains one on the sample
and transfer fine-tunes it; an encoder that cannot take the size or gives no pooled feature is refused before compute."""

import dataclasses

import pytest
import torch

from conftest import one_torch_thread
from imgwang import runs
from imgwang.core.errors import ConfigError
from imgwang.models.checkpoint import load_encoder, save_encoder
from imgwang.models.encoders import create_encoder, encoder_problem
from imgwang.stages import pretrain, transfer
from imgwang.stages import stage_data as data
from imgwang.stages.preflight import check_encoder
from imgwang.stages.pretrain import run_pretrain
from imgwang.stages.resolve import resolve
from imgwang.stages.transfer import run_transfer
from imgwang.tasks.registry import get_task

VIT = "vit_tiny_patch16_224"


def test_encoder_problem_names_what_cannot_work_without_building_anything():
    assert encoder_problem(VIT, 64, 28) is None  # 28 px views are padded to the patch grid
    assert encoder_problem("tinyconv", 64, 28) is None and encoder_problem("resnet18", 64, 28) is None
    assert "cannot take 28x28 px inputs (smaller views at SIZE=64)" in encoder_problem("beit_base_patch16_224", 64, 28)
    assert encoder_problem("beit_base_patch16_224", 64) is None  # built for 64 px, it takes 64 px
    assert "cannot be built as an encoder" in encoder_problem("coat_tiny", 64)  # it has no pooling-free form
    assert "cannot take 32x32 px inputs (SIZE=32)" in encoder_problem("inception_v3", 32)
    assert encoder_problem("vit_tinyy", 64).startswith("unknown ARCH='vit_tinyy'")


def test_a_vit_is_built_for_size_takes_smaller_views_and_loads_at_another_size(tmp_path):
    torch.manual_seed(0)
    enc = create_encoder(VIT, 64).eval()
    assert enc.body.pos_embed.shape == (1, 1 + 4 * 4, 192)  # a 4x4 grid of 16 px patches, not 224's 14x14
    assert enc.build_kwargs == {"img_size": 64, "dynamic_img_size": True, "dynamic_img_pad": True}
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert enc(images).shape == (2, 192) and enc(images[..., :28, :28]).shape == (2, 192)
        small = enc(images[..., :32, :32])
    save_encoder(enc, tmp_path / "encoder.pt", safetensors_copy=True)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "encoder.safetensors"), "pt") as f:  # the file records how to build it again
        assert f.metadata()["arch"] == VIT and '"img_size": 64' in f.metadata()["timm_kwargs"]
    at_32 = load_encoder(create_encoder(VIT, 32), tmp_path / "encoder.pt").eval()  # positions resampled on load
    assert at_32.body.pos_embed.shape == (1, 1 + 2 * 2, 192)
    with torch.no_grad():  # the same numbers as the 64 px model resampling them per forward
        assert torch.allclose(at_32(images[..., :32, :32]), small, atol=1e-5)


def small_stage_data(*args, **kw):
    """The sample's first rows of each kind: a ViT step is slow on a busy CPU."""
    sd = data.load_stage_data(*args, **kw)
    return dataclasses.replace(sd, unlabelled_rows=sd.unlabelled_rows[:32], train_rows=sd.train_rows[:40],
                               train_labels=sd.train_labels[:40], val_rows=sd.val_rows[:20], val_labels=sd.val_labels[:20])


def test_dino_pretrains_a_vit_at_64_px_with_its_multi_crop_and_transfer_fine_tunes_it(lab_env, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "load_stage_data", small_stage_data)
    monkeypatch.setattr(transfer, "load_stage_data", small_stage_data)
    common = dict(data="sample", arch=VIT, size=64, epochs=1, bs=16, device="cpu", comet="off", seed=0)
    cfg = resolve("pretrain", dict(common, task="dino", knn_every=0, task_params=dict(out_dim=256, n_local_crops=2)))
    (tmp_path / "v1").mkdir()
    with one_torch_thread():
        result = run_pretrain(cfg, tmp_path / "v1")
    sides = sorted({v.shape[-1] for v in result["task"].make_views(torch.rand(2, 3, 64, 64), torch.Generator())})
    assert sides == [28, 64]  # the 2 global views at SIZE and the local ones, smaller, went through the ViT
    history = result["history"]
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    runs.update_stage(tmp_path / "v1", "pretrain", status="done", config=cfg)
    tcfg = resolve("transfer", dict(common, from_version="v1", runs=1))
    with one_torch_thread():
        out = run_transfer(tcfg, tmp_path / "v1", tmp_path)
    assert 0.0 <= out["val_acc"] <= 1.0 and out["model"].encoder.body.pos_embed.shape == (1, 17, 192)


def test_a_vit_feature_is_its_class_token_and_an_average_pooled_transformer_leaves_prefix_tokens_out():
    """Pooled as timm pools the model: vit_tiny's global_pool is "token", so its feature is the class token (what DINO
    trains its head on and evaluates); a transformer that averages leaves the class token out of the mean."""
    torch.manual_seed(0)
    enc = create_encoder(VIT, 32).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tokens = enc.body.forward_features((images - enc.mean) / enc.std)  # (2, 1 + 2 x 2, 192)
        assert enc.token_pool == "token" and enc.prefix_tokens == 1
        assert torch.equal(enc(images), tokens[:, 0])
        enc.token_pool = "avg"
        assert torch.allclose(enc(images), tokens[:, 1:].mean(dim=1))
    assert create_encoder("tinyconv").token_pool == "avg"  # a CNN's maps are averaged, as before


def test_an_encoder_that_cannot_take_size_or_views_is_told_the_smallest_size_that_works():
    dino = get_task("dino")
    with pytest.raises(ConfigError) as refused:  # convnext's 2x2 downsampling runs out of pixels on 21 px views
        check_encoder("convnext_atto", 48, dino)
    assert str(refused.value).endswith("; SIZE=80 would work")
    assert encoder_problem("convnext_atto", 80, *dino.view_sides(80)) is None  # 34 px views
    assert encoder_problem("convnext_atto", 72, *dino.view_sides(72)) is not None  # 31 px: the one below fails
    with pytest.raises(ConfigError) as refused:
        check_encoder("inception_v3", 32)
    assert str(refused.value).endswith("; SIZE=80 would work")  # inception's stem needs 75 px
    with pytest.raises(ConfigError) as refused:  # no SIZE helps an encoder that cannot be built
        check_encoder("coat_tiny", 64)
    assert "would work" not in str(refused.value)
