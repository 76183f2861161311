"""A stage's result is a function of its parameters: the seed fixes the initial weights, whatever ran
before in the kernel (which moves the global random state)."""

import torch

from imgwang.stages.pretrain import run_pretrain
from imgwang.stages.resolve import resolve
from imgwang.stages.transfer import run_transfer

COMMON = dict(data="sample", arch="tinyconv", size=24, epochs=1, bs=32, device="cpu", comet="off", seed=3)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_transfer_from_none_repeats_exactly_whatever_ran_before(lab_env, tmp_path):
    cfg = resolve("transfer", dict(COMMON, from_version="none", runs=1))
    results = []
    for i, noise in enumerate((1, 2)):
        torch.manual_seed(noise)
        torch.rand(100 * noise)  # other work in the kernel moved the global random state
        run_dir = tmp_path / f"v{i}"
        run_dir.mkdir()
        results.append(run_transfer(cfg, run_dir, tmp_path))
    assert torch.equal(_weights(results[0]["model"]), _weights(results[1]["model"]))
    assert results[0]["val_accs"] == results[1]["val_accs"]
    other = run_transfer(dict(cfg, seed=4), tmp_path / "v0", tmp_path)  # a different seed: a different run
    assert not torch.equal(_weights(other["model"]), _weights(results[0]["model"]))


def test_pretrain_repeats_exactly_whatever_ran_before(lab_env, tmp_path):
    cfg = resolve("pretrain", dict(COMMON, task="rotation", knn_every=1))
    finals = []
    for i, noise in enumerate((1, 2)):
        torch.manual_seed(noise)
        torch.rand(100 * noise)
        run_dir = tmp_path / f"v{i}"
        run_dir.mkdir()
        result = run_pretrain(cfg, run_dir)
        finals.append((result["history"][-1]["train_loss"], result["knn_acc_init"]))
    assert finals[0] == finals[1]  # the untrained encoder's kNN accuracy too: the seed fixes it
    assert 0 < finals[0][1] < 1
