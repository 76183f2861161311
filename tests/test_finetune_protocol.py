"""Fine-tuning that fits the labelled set, the dev split, and evaluate over every repeat."""

from pathlib import Path

import numpy as np
import pytest
import torch

from imgwang.data.split import dev_mask
from imgwang.evaluate.pixels import pixel_features, standardise
from imgwang.stages.resolve import resolve
from imgwang.train.batching import MIN_BATCH, fit_batch, steps_per_epoch


@pytest.mark.parametrize("n, bs, batch, drop, steps", [
    (100, 64, 25, False, 4),  # 100 labels: four steps of 25, not one step of 64 and 36 images dropped
    (14669, 64, 64, False, 230),  # Imagewang's train/: the requested batch, the last 13 images kept
    (130, 64, 32, True, 4),  # 130 = 4 x 32 + 2: a last batch of 2 would be noise for BatchNorm: dropped
    (20, 64, 8, True, 2),  # a remainder under MIN_BATCH is dropped (4 images of a reshuffled epoch)
    (5, 64, 5, False, 1),  # fewer images than MIN_BATCH: one batch of all of them
    (480, 32, 32, False, 15),  # the sample: unchanged
])
def test_the_batch_adapts_to_small_labelled_sets(n, bs, batch, drop, steps):
    assert fit_batch(n, bs) == (batch, drop)
    assert steps_per_epoch(n, batch, drop) == steps
    assert n - steps * batch < MIN_BATCH if drop else steps * batch >= n


def _train_items(per_class: dict[int, int]):
    paths = [Path(f"/data/train/n{c:08d}/img_{i:04d}.JPEG") for c, k in per_class.items() for i in range(k)]
    labels = [c for c, k in per_class.items() for _ in range(k)]
    return paths, np.array(labels)


def test_the_dev_split_is_stratified_seeded_disjoint_and_stable():
    paths, labels = _train_items({0: 24, 1: 24, 2: 10, 3: 3, 4: 1})
    held = dev_mask(paths, labels)
    assert [int(held[labels == c].sum()) for c in range(5)] == [5, 5, 2, 1, 0]  # a fifth of each class
    fit = ~held  # what fine-tuning sees: the rest, nothing in both, nothing lost
    assert not (held & fit).any() and (held | fit).all()
    order = np.random.default_rng(1).permutation(len(paths))  # another listing order, another machine
    again = dev_mask([paths[i] for i in order], labels[order])
    assert {paths[i] for i in order[again]} == {p for p, h in zip(paths, held) if h}
    moved = dev_mask([Path("/elsewhere") / p.relative_to("/data") for p in paths], labels)
    assert (moved == held).all()  # the data folder's location does not matter
    assert not (dev_mask(paths, labels, seed=1) == held).all()  # the seed picks the images
    more_paths, more_labels = _train_items({0: 24, 1: 25, 2: 10, 3: 3, 4: 1})  # one image added to class 1
    more = dev_mask(more_paths, more_labels)
    assert (more[more_labels != 1] == held[labels != 1]).all()  # the other classes keep their dev images


def test_pixel_features_are_downsampled_and_standardised():
    from imgwang.data.batch import Batch

    images = torch.rand(6, 3, 64, 64)
    batches = [Batch(images=images[:4], labels=torch.arange(4), indices=torch.arange(4)),
               Batch(images=images[4:], labels=torch.arange(2), indices=torch.arange(4, 6))]
    feats, _, rows = pixel_features(batches, side=16)
    assert feats.shape == (6, 3 * 16 * 16) and rows.tolist() == list(range(6))
    assert feats[0, 0] == pytest.approx(images[0, 0, :4, :4].mean().item())  # area: the mean of a 4x4 block
    fit, other = standardise(feats[:4], feats[4:])
    assert fit.mean(0).abs().max() < 1e-5 and fit.std(0, unbiased=False).sub(1).abs().max() < 1e-4
    assert other.shape == (2, 768)


def test_evaluate_scores_every_repeat_and_dev_keeps_its_images_out(lab_env, tmp_path):
    from imgwang import runs
    from imgwang.stages.evaluate import run_evaluate
    from imgwang.stages.stage_data import load_stage_data
    from imgwang.stages.transfer import run_transfer

    common = dict(data="sample", arch="tinyconv", size=24, bs=32, device="cpu", comet="off", seed=0, from_version="none")
    cfg = resolve("transfer", dict(common, epochs=1, runs=2, split="dev"))
    run_dir = tmp_path / "v1"
    runs.update_stage(run_dir, "transfer", status="running", config=cfg)
    result = run_transfer(cfg, run_dir, tmp_path)
    sd = load_stage_data("sample", 24, progress=False)
    fit_rows, _, dev_rows, _ = sd.labelled("dev")
    assert len(dev_rows) == 20 * 5 and len(fit_rows) == 20 * 19 and not set(fit_rows) & set(dev_rows)
    assert result["train_bs"] == 32 and result["steps_per_epoch"] == 12  # 380 = 11 x 32 + 28: all kept
    assert runs.read_run_json(run_dir)["stages"]["transfer"]["steps_per_epoch"] == 12

    ev = run_evaluate(resolve("evaluate", dict(common, knn_k=5, knn_t=0.07, probe_folds=2, random_inits=3)), run_dir,
                      tmp_path)
    assert ev["split"] == "dev" and len(ev["eval_accs"]) == 2
    spread = ev["random_spread"]  # the random-init kNN over inits: each is the reference `make evaluate SEED=s` scores
    assert spread["seeds"] == [0, 1, 2] and spread["knn_accs"][0] == ev["frozen"]["random"]["knn_acc"]
    again = run_evaluate(resolve("evaluate", dict(common, seed=1, knn_k=5, knn_t=0.07, probe_folds=2, random_inits=1)),
                         run_dir, tmp_path)
    assert again["random_spread"]["knn_accs"] == [again["frozen"]["random"]["knn_acc"]] == [spread["knn_accs"][1]]
    assert spread["mean"] == pytest.approx(np.mean(spread["knn_accs"]))
    assert spread["sd"] == pytest.approx(np.std(spread["knn_accs"], ddof=1))
    assert ev["eval_accs"] == pytest.approx(result["val_accs"])  # each repeat's own classifier, scored again
    assert ev["eval_acc"] == pytest.approx(result["val_acc"])
    assert ev["confusion"].sum() == 2 * len(dev_rows)  # summed over the repeats
    assert set(ev["frozen"]) == {"random", "pixels"} and 0 <= ev["frozen"]["pixels"]["linear_acc"] <= 1


def test_transfer_says_when_it_fine_tunes_at_another_size_than_the_encoder_was_pretrained_at(tmp_path):
    """SIZE is each stage's own (the data's default when not given): a pretrain at SIZE=64 on a folder followed by
    `make transfer` fine-tunes at 128 px. The stage says so, naming the size that would match."""
    from imgwang import runs
    from imgwang.stages.transfer import size_note

    (tmp_path / "v1").mkdir()
    runs.update_stage(tmp_path / "v1", "pretrain", status="done", config={"size": 64, "arch": "tinyconv"})
    note = size_note(tmp_path, "v1", 128)
    assert note.startswith("note:") and "64 px" in note and "128 px" in note and "SIZE=64" in note
    assert size_note(tmp_path, "v1", 64) is None  # the same size: nothing to say
    assert size_note(tmp_path, "none", 128) is None  # a random-init baseline has no pretraining size
    (tmp_path / "v2").mkdir()
    assert size_note(tmp_path, "v2", 128) is None  # no pretrain recorded: the stage's own check refuses it elsewhere
