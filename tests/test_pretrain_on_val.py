"""Pretraining on val images (no labels) is an explicit opt-in: the pretext metric then comes from a held-out
tenth of all images, and the fine-tuning that loads such an encoder says so in its leaderboard line."""

import dataclasses
from types import SimpleNamespace

import numpy as np

from conftest import one_torch_thread
from imgwang import runs
from imgwang.stages import pretrain, transfer
from imgwang.stages import stage_data as data
from imgwang.stages.pretrain import run_pretrain
from imgwang.stages.resolve import resolve
from imgwang.stages.stage_data import pretext_split
from imgwang.stages.transfer import leaderboard_line, run_transfer

COMMON = dict(data="sample", arch="tinyconv", size=24, epochs=1, bs=32, device="cpu", comet="off", seed=0)


def test_the_split_never_measures_on_images_it_pretrains_on():
    rng = np.random.default_rng(0)
    rows = rng.permutation(200)
    sd = SimpleNamespace(unlabelled_rows=np.sort(rows[:150]), val_rows=np.sort(rows[150:]))
    train, held, what = pretext_split(sd, on_val=False)
    assert np.array_equal(train, sd.unlabelled_rows) and np.array_equal(held, sd.val_rows) and "val/" in what
    train, held, what = pretext_split(sd, on_val=True)
    assert np.intersect1d(train, held).size == 0 and np.array_equal(np.union1d(train, held), np.arange(200))
    assert np.array_equal(held, np.arange(0, 200, 10)) and "held out" in what  # every 10th, in path order
    assert np.isin(sd.val_rows, train).mean() > 0.8  # most val images are now pretrained on
    assert np.isin(held, sd.val_rows).any() and np.isin(held, sd.unlabelled_rows).any()  # held out from both


def small_stage_data(*args, **kw):
    """The sample's first rows of each kind: the stages' own code over a fifth of the images (a busy CPU)."""
    sd = data.load_stage_data(*args, **kw)
    return dataclasses.replace(sd, unlabelled_rows=sd.unlabelled_rows[:240], train_rows=sd.train_rows[:96],
                               train_labels=sd.train_labels[:96], val_rows=sd.val_rows[:64], val_labels=sd.val_labels[:64])


def test_the_stage_records_it_and_transfer_flags_it(lab_env, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "load_stage_data", small_stage_data)
    monkeypatch.setattr(transfer, "load_stage_data", small_stage_data)
    lines = {}
    for on_val in (False, True):
        name = f"pre-{on_val}"
        cfg = resolve("pretrain", dict(COMMON, task="rotation", knn_every=0, pretrain_on_val=on_val))
        (tmp_path / name).mkdir()
        with one_torch_thread():
            result = run_pretrain(cfg, tmp_path / name)
        assert cfg["pretrain_on_val"] is on_val and cfg["optimizer"] == "adamw"  # the glued config says it
        n_pool = len(np.union1d(result["data"].unlabelled_rows, result["data"].val_rows))
        if on_val:
            assert result["pretrain_images"] + result["pretext_val_images"] == n_pool
            assert result["pretext_val_images"] == -(-n_pool // 10)
        else:
            assert result["pretext_val_images"] == len(result["data"].val_rows)
        assert (tmp_path / name / "encoder.safetensors").exists()
        runs.update_stage(tmp_path / name, "pretrain", status="done", config=cfg)
        tcfg = resolve("transfer", dict(COMMON, from_version=name, runs=1))
        (tmp_path / f"ft-{on_val}").mkdir()
        with one_torch_thread():
            out = run_transfer(tcfg, tmp_path / f"ft-{on_val}", tmp_path)
        assert out["pretrained_on_val"] is on_val
        lines[on_val] = leaderboard_line(tcfg, out)
    assert "pretrained on val/" in lines[True].splitlines()[0] and "val/" not in lines[False]


def test_compare_shows_which_encoders_saw_val_images(tmp_path):
    from test_runs import fake_executed_notebook

    from imgwang.stages import compare

    for v, on_val in (("v1", True), ("v2", None)):  # v2 pretrained before the option existed: without val
        pre = {"arch": "resnet18", "data": "sample", "size": 64, "epochs": 3}
        fake_executed_notebook(tmp_path / v / "01-pretrain.ipynb", {
            "task": "swav", "config": pre if on_val is None else {**pre, "pretrain_on_val": on_val}})
    for v, source in (("v1", "v1"), ("v3", "v1"), ("v4", "v2"), ("v5", "none")):
        fake_executed_notebook(tmp_path / v / "02-transfer.ipynb", {
            "config": {"arch": "resnet18", "data": "sample", "size": 64, "epochs": 5}, "from_version": source,
            "val_acc": 0.3, "val_accs": [0.3]})
    rows = {r["version"]: r["pretrain_on_val"] for r in compare.compare_table(tmp_path).to_dict("records")}
    assert rows["v1"] is True and rows["v3"] is True  # v3 fine-tuned v1's encoder in a version of its own
    assert rows["v2"] is False and rows["v4"] is False and compare.is_missing(rows["v5"])


def test_a_val_set_smaller_than_a_batch_gets_its_own_chance(lab_env, tmp_path, monkeypatch, capsys):
    """simclr at BS=32 with 20 val images: the val pair accuracy picks among 39 other views, not 63, so the
    chance glued beside it (pretext_chance) is 1/39; the training batches' stays 1/63. The stage's first line
    says how many optimizer steps the run takes (what a method's learning follows)."""
    def few_val(*args, **kw):
        sd = small_stage_data(*args, **kw)
        return dataclasses.replace(sd, val_rows=sd.val_rows[:20], val_labels=sd.val_labels[:20])

    monkeypatch.setattr(pretrain, "load_stage_data", few_val)
    cfg = resolve("pretrain", dict(COMMON, task="simclr", knn_every=0))
    with one_torch_thread():
        result = run_pretrain(cfg, tmp_path)
    assert (result["chance"], result["train_chance"]) == (1 / 39, 1 / 63)
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("pretraining on "))
    assert line.startswith("pretraining on 240 images; optimizer steps: 7 an epoch, 7 in all (batch 32); "), line
    assert pretrain.pretrain_scraps(cfg, result)["pretext_chance"] == 1 / 39
