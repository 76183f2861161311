"""BatchNorm statistics estimated for the random-init references (imgwang.evaluate.bn_stats)."""

import numpy as np
import torch
from torch import nn

from conftest import gen, one_torch_thread, smooth_images
from imgwang.data.batch import Batch
from imgwang.evaluate import bn_stats, monitor
from imgwang.evaluate.bn_stats import batchnorms, bn_rows, estimate_bn_stats
from imgwang.models.encoders import create_encoder
from imgwang.stages.stage_data import load_stage_data


def batches(images: torch.Tensor, size: int) -> list[Batch]:
    n = len(images)
    return [Batch(images[i:i + size], torch.zeros(len(images[i:i + size]), dtype=torch.long), torch.arange(i, min(i + size, n)))
            for i in range(0, n, size)]


def test_running_statistics_become_the_data_batch_statistics():
    torch.manual_seed(0)
    encoder = create_encoder("tinyconv")
    first = batchnorms(encoder)[0]
    assert torch.equal(first.running_mean, torch.zeros_like(first.running_mean))  # untouched: mean 0, var 1
    weights = {k: v.clone() for k, v in encoder.state_dict().items() if "running" not in k and "batches" not in k}
    images = smooth_images(24, 16, seed=3)
    seen = []
    hook = first.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach().clone()))
    encoder.train()  # estimate must not depend on the mode it was left in
    assert estimate_bn_stats(encoder, batches(images, 8), "cpu") == 3
    hook.remove()
    # what the first BatchNorm saw in each of the three batches: its running statistics are their average
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen])
    variances = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in seen])
    assert torch.allclose(first.running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(first.running_var, variances.mean(0), rtol=1e-5)
    assert not torch.allclose(first.running_var, torch.ones_like(first.running_var), atol=0.05)
    assert all(m.momentum == 0.1 for m in batchnorms(encoder))  # PyTorch's default back in place
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in weights.items())  # buffers only


def test_only_batchnorm_layers_train_while_estimating():
    """Dropout stays off: the statistics are those of the encoder as it will be used, in eval mode."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.9), nn.BatchNorm2d(4))
    images = torch.rand(16, 3, 8, 8, generator=gen(1))
    estimate_bn_stats(net, batches(images, 16), "cpu")
    conv_out = net[0](images)
    assert torch.allclose(net[2].running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-6)  # no dropout in between


def test_an_encoder_without_batchnorm_is_left_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 6, 6]))
    assert estimate_bn_stats(net, batches(torch.rand(4, 3, 8, 8, generator=gen()), 2), "cpu") == 0


def test_the_rows_spread_over_a_class_ordered_list():
    rows = np.arange(1000)
    picked = bn_rows(rows, 10)
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] == 999 and len(set(picked)) == 10
    assert bn_rows(rows[:7], 10).tolist() == list(range(7))


def test_the_monitor_scores_the_untrained_encoder_with_estimated_statistics(lab_env, monkeypatch):
    """Epoch 0 (the untrained reference) extracts from a copy with the data's statistics; later epochs from
    the model itself, whose statistics training owns; the model being trained is never touched."""
    sd = load_stage_data("sample", 24, progress=False)
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = create_encoder("tinyconv")

    model = Model()
    used = []
    real = monitor.extract_features

    def spy(encoder, loader, device):
        used.append((encoder, batchnorms(encoder)[0].running_mean.clone()))
        return real(encoder, loader, device)

    monkeypatch.setattr(monitor, "extract_features", spy)
    sizes = []
    monkeypatch.setattr(bn_stats, "estimate_bn_stats", lambda e, loader, d: sizes.append(len(loader.rows)) or
                        estimate_bn_stats(e, loader, d))
    epoch_metrics = monitor.knn_monitor(sd, every=1, last_epoch=1, batch_size=32, device="cpu")
    assert 0 <= epoch_metrics(model, 0)["knn_acc"] <= 1
    memory, _ = monitor.split_for_knn(sd.train_rows, sd.train_labels)
    assert sizes == [len(memory)]  # the memory images, all of them (fewer than MAX_IMAGES)
    assert all(e is not model.encoder and mean.abs().sum() > 0 for e, mean in used)
    assert batchnorms(model.encoder)[0].running_mean.abs().sum() == 0  # the trained model's buffers unchanged
    used.clear()
    epoch_metrics(model, 1)
    assert all(e is model.encoder for e, _ in used) and len(sizes) == 1


def test_bn_reference_scores_the_random_encoder_before_and_after_estimating_its_statistics(lab_env, capsys):
    """bin/bn_reference.py: evaluate's random-init encoder of a seed, scored by evaluate's rules with a new
    BatchNorm's statistics and with them estimated on the fitting set; a bad ARCH is one error line, exit 2."""
    import bn_reference

    with one_torch_thread():
        rows = bn_reference.measure("sample", "tinyconv", 32, [0], bs=64)
    assert [r["statistics"] for r in rows] == ["untouched", "estimated"] and {r["seed"] for r in rows} == {0}
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("knn_acc", "linear_acc"))
    assert (rows[0]["knn_acc"], rows[0]["linear_cv_acc"]) != (rows[1]["knn_acc"], rows[1]["linear_cv_acc"])  # other features
    assert bn_reference.main(["--arch", "no_such_model", "--size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no_such_model" in err[0]
