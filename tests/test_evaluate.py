"""Evaluation: objective, feature extraction, weighted kNN, linear probe, metrics, plots."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from imgwang.core.errors import ConfigError, DataError, ImgwangError
from imgwang.data.batch import Batch
from imgwang.evaluate import (
    Classification,
    accuracy,
    confusion_matrix,
    extract_features,
    image_grid,
    knn_accuracy,
    knn_predict,
    mean_std,
    per_class_accuracy,
    plot_confusion,
    predict,
)
from imgwang.train.plots import mark_chance, plot_curves, plot_history  # noqa: E402

pytestmark = pytest.mark.usefixtures("close_figures")


def make_batches(n=10, bs=4, size=4, seed=0):
    """A plain list of Batches is a valid loader: images, labels and shuffled dataset indices."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    indices = torch.randperm(100, generator=g)[:n]
    return [Batch(images[i:i + bs], labels[i:i + bs], indices[i:i + bs]) for i in range(0, n, bs)], images, labels, indices


# --- objective ---------------------------------------------------------------------------------------

def test_classification_follows_the_task_protocol():
    obj = Classification(4)
    assert obj.metric_name == "accuracy" and obj.chance == 0.25
    batch = Batch(torch.rand(3, 3, 4, 4), torch.tensor([0, 3, 1]), torch.tensor([7, 8, 9]))
    inputs, targets, meta = obj.prepare(batch, torch.Generator())
    assert inputs is batch.images and targets is batch.labels and torch.equal(meta["indices"], batch.indices)

    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 3.0, 0.0]])
    expected = -torch.log_softmax(logits, 1)[torch.arange(3), targets].mean()
    assert torch.allclose(obj.loss(logits, targets), expected)
    assert obj.metric(logits, targets).item() == pytest.approx(2 / 3)  # the third is predicted 2, true 1
    # smoothing moves target mass away from the label: loss differs, the half-precision loss is float32
    assert not torch.allclose(Classification(4, label_smoothing=0.1).loss(logits, targets), expected)
    assert obj.loss(logits.half(), targets).dtype == torch.float32


def test_classification_rejects_unlabelled_batches_and_bad_settings():
    batch = Batch(torch.rand(2, 3, 4, 4), torch.tensor([0, -1]), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="unlabelled"):
        Classification(3).prepare(batch, None)
    with pytest.raises(DataError, match="label 3, outside 0..2"):
        Classification(3).check_labels(np.array([0, 2, 3]))
    Classification(3).check_labels(np.array([0, 2, 1]))
    with pytest.raises(ConfigError):
        Classification(1)
    with pytest.raises(ConfigError):
        Classification(3, label_smoothing=1.0)


# --- features ----------------------------------------------------------------------------------------

class DropoutEncoder(nn.Module):
    """Dropout makes train mode random, so equal repeated outputs prove eval mode was used."""

    num_features = 5

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48, 5), nn.Dropout(0.5))

    def forward(self, x):
        return self.net(x)


def test_extract_features_uses_eval_mode_keeps_order_and_restores_training():
    torch.manual_seed(0)
    loader, images, labels, indices = make_batches()
    encoder = DropoutEncoder().train()
    feats, got_labels, got_indices = extract_features(encoder, loader, "cpu")
    assert encoder.training  # the caller's mode comes back
    assert feats.dtype == torch.float32 and feats.device.type == "cpu" and not feats.requires_grad
    assert torch.equal(got_labels, labels) and torch.equal(got_indices, indices)
    with torch.no_grad():
        expected = encoder.eval()(images)
    assert torch.allclose(feats, expected, atol=1e-6)


def test_predict_returns_softmax_probabilities_in_loader_order():
    torch.manual_seed(0)
    loader, images, labels, indices = make_batches()
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    probs, got_labels, got_indices = predict(model, loader, "cpu")
    assert probs.shape == (10, 3)
    assert torch.allclose(probs.sum(1), torch.ones(10), atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(probs, model(images).softmax(1), atol=1e-6)
    assert torch.equal(got_labels, labels) and torch.equal(got_indices, indices)
    with pytest.raises(DataError, match="no batches"):
        predict(model, [], "cpu")


# --- kNN ---------------------------------------------------------------------------------------------

def clustered(n_per_class, n_classes=4, dim=16, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * 3
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_knn_separates_well_separated_clusters():
    train_x, train_y = clustered(50, seed=0)
    val_x, val_y = clustered(25, seed=0)  # same centres (same seed), fresh points drawn after them
    val_x = val_x + 0.1 * torch.randn(val_x.shape, generator=torch.Generator().manual_seed(1))
    assert knn_accuracy(train_x, train_y, val_x, val_y, k=20) == 1.0


def test_knn_with_labels_unrelated_to_features_is_near_chance():
    g = torch.Generator().manual_seed(0)
    train_x, val_x = torch.randn(1000, 32, generator=g), torch.randn(1000, 32, generator=g)
    train_y, val_y = torch.randint(0, 4, (1000,), generator=g), torch.randint(0, 4, (1000,), generator=g)
    assert abs(knn_accuracy(train_x, train_y, val_x, val_y, k=20) - 0.25) < 0.07


def test_knn_weighting_lets_one_close_neighbour_beat_two_far_ones():
    angle = math.radians(60)  # cosine 0.5 to the query
    train_x = torch.tensor([[1.0, 0.0], [math.cos(angle), math.sin(angle)], [math.cos(angle), -math.sin(angle)]])
    train_y = torch.tensor([0, 1, 1])
    query = torch.tensor([[5.0, 0.0]])  # the length must not matter: cosine similarity
    assert knn_predict(train_x, train_y, query, k=3, temperature=0.07).item() == 0  # weights 1 vs 2 x e^-7
    assert knn_predict(train_x, train_y, query, k=3, temperature=100.0).item() == 1  # near-equal weights: majority
    assert knn_predict(train_x, train_y, query, k=100, temperature=100.0).item() == 1  # k clamped to the 3 points


def test_knn_chunking_does_not_change_predictions():
    g = torch.Generator().manual_seed(3)
    train_x, val_x = torch.randn(200, 8, generator=g), torch.randn(53, 8, generator=g)
    train_y = torch.randint(0, 5, (200,), generator=g)
    whole = knn_predict(train_x, train_y, val_x, k=7, chunk_size=10_000)
    assert torch.equal(knn_predict(train_x, train_y, val_x, k=7, chunk_size=6), whole)


def test_knn_states_its_settings_and_keeps_the_convention():
    from imgwang.evaluate.knn import TEMPERATURE, K, describe_knn

    assert (K, TEMPERATURE) == (20, 0.07)
    assert describe_knn(0.4512, 20, 0.07, "pretrained") == "pretrained: kNN (k=20, T=0.07, cosine) val 45.12%"


def test_frozen_score_lines_name_the_set_scored_on_and_the_one_fitted_on(capsys):
    """With SPLIT=dev evaluate scores on dev and fits on the rest of train/; its lines must not say val."""
    from imgwang.stages.evaluate import frozen_scores

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    feats = torch.randn(40, 6, generator=g) + 3 * nn.functional.one_hot(labels, 6).float()
    frozen_scores({"seed": 0, "probe_folds": 2}, feats[:24], labels[:24], feats[24:], labels[24:], 4, "pixels", "dev")
    out = capsys.readouterr().out
    assert "pixels: kNN (k=20, T=0.07, cosine) dev " in out and "pixels: linear probe: dev " in out
    assert "CV on train without dev" in out and " val " not in out


def test_one_fitting_image_per_class_scores_and_glues_no_empty_cv_accuracy(capsys):
    """A tiny labelled set under SPLIT=dev keeps one fitting image per class: the probe runs without CV, and its
    missing CV accuracy is left out of the scraps (scrapbook cannot glue None) rather than failing the stage."""
    from imgwang.stages.evaluate import evaluate_scraps, frozen_scores

    labels = torch.arange(3)
    feats = 3 * nn.functional.one_hot(labels, 5).float()
    frozen = {ref: frozen_scores({"seed": 0}, feats, labels, feats, labels, 3, ref, "dev") for ref in ("random", "pixels")}
    assert "without CV" in capsys.readouterr().out and frozen["pixels"]["linear_cv_acc"] is None
    result = {"eval_acc": 0.5, "eval_accs": [0.5], "split": "dev", **frozen["random"], "per_class_acc": {"a": 0.5},
              "wall_s": 1.0, "frozen": frozen, "random_spread": {"knn_accs": [1.0], "mean": 1.0, "sd": 0.0}}
    scraps = evaluate_scraps({"seed": 0}, result)
    assert not any(key.startswith("linear_cv_acc") for key in scraps)
    assert None not in scraps.values() and scraps["linear_acc_pixels"] == 1.0


def test_a_probe_that_did_not_converge_is_said_once_in_the_stage_line_not_again_as_a_warning(capsys, monkeypatch):
    import functools
    import warnings

    from imgwang.evaluate.linear_probe import ProbeNotConverged, linear_probe
    from imgwang.stages import evaluate

    monkeypatch.setattr(evaluate, "linear_probe", functools.partial(linear_probe, max_iter=2))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    feats = torch.randn(40, 6, generator=g) + 3 * nn.functional.one_hot(labels, 6).float()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = evaluate.frozen_scores({"seed": 0, "probe_folds": 2}, feats[:24], labels[:24], feats[24:], labels[24:], 4)
    assert not scores["linear_converged"] and "did not converge: the final fit" in capsys.readouterr().out
    assert not [w for w in caught if issubclass(w.category, ProbeNotConverged)]


def test_knn_rejects_unlabelled_training_rows():
    with pytest.raises(DataError, match="unlabelled"):
        knn_accuracy(torch.randn(3, 2), torch.tensor([0, -1, 1]), torch.randn(2, 2), torch.tensor([0, 1]))


# --- metrics -----------------------------------------------------------------------------------------

NAMES = ["tench", "beagle", "dingo", "samoyed"]
LABELS = torch.tensor([0, 0, 1, 1, 1, 3])  # class 2 absent from this val subset
PRED = torch.tensor([0, 1, 1, 1, 0, 2])


def test_accuracy_per_class_and_confusion_on_a_hand_made_example():
    assert accuracy(PRED, LABELS) == pytest.approx(3 / 6)
    assert accuracy(PRED.numpy(), LABELS.tolist()) == pytest.approx(3 / 6)
    per_class = per_class_accuracy(PRED, LABELS, NAMES)
    assert per_class == pytest.approx({"tench": 0.5, "beagle": 2 / 3, "samoyed": 0.0})
    assert list(per_class) == ["tench", "beagle", "samoyed"]  # class-index order, absent dingo left out
    cm = confusion_matrix(PRED, LABELS, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    with pytest.raises(DataError):
        accuracy(PRED[:3], LABELS)
    with pytest.raises(DataError):
        confusion_matrix(PRED, LABELS, 3)


def test_mean_std_uses_the_sample_std():
    mean, std = mean_std([0.70, 0.72, 0.74, 0.76])
    assert mean == pytest.approx(0.73)
    assert std == pytest.approx(math.sqrt((0.03**2 + 0.01**2 + 0.01**2 + 0.03**2) / 3))
    assert mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ImgwangError):
        mean_std([])


# --- plots -------------------------------------------------------------------------------------------

def test_plot_confusion_shows_present_rows_and_every_predicted_column():
    cm = confusion_matrix(PRED, LABELS, 4)
    fig = plot_confusion(cm, NAMES)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tench", "beagle", "samoyed"]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES  # dingo: never true, but predicted once
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1", "2"]
    full = plot_confusion(cm, NAMES, present_only=False)
    assert len(full.axes[0].get_yticklabels()) == 4


def test_many_classes_show_the_busiest_and_every_row_keeps_its_images():
    """100 classes: the confusion shows the 25 with the most mistakes, plus an "other" column; the per-class table
    the 25 lowest, saying how many there are."""
    from imgwang.evaluate.plots import per_class_table

    names = [f"c{i:03d}" for i in range(100)]
    labels = np.repeat(np.arange(100), 3)
    pred = labels.copy()
    pred[3 * np.arange(30)] = 99 - np.arange(30)  # classes 0-29 each lose one image, to classes 99-70
    pred[1] = 50  # class 0 loses a second one, to class 50 (one mistake into it: not among the busiest)
    fig = plot_confusion(confusion_matrix(pred, labels, 100), names)
    (ax,) = fig.axes
    shown = [t.get_text() for t in ax.get_xticklabels()]
    assert len(shown) == 26 and shown[-1] == "other" and "c000" in shown and "c050" not in shown
    assert [t.get_text() for t in ax.get_yticklabels()] == shown[:-1]
    grid = ax.images[0].get_array()
    assert (np.asarray(grid).sum(1) == 3).all()  # whatever is not shown lands in "other"
    assert "25 of" in ax.get_title()
    accuracy = per_class_accuracy(pred, labels, names)
    table = per_class_table(accuracy)
    assert list(table.data.index[:2]) == ["c000", "c001"] and len(table.data) == 25
    assert "25 lowest of 100" in table.caption and "white-space: nowrap" in table.to_html()  # one readable line
    assert "; 29 classes share the last one's 66.7%" in table.caption  # the cut at 25 runs through c001-c029
    distinct = per_class_table({f"c{i:02d}": i / 100 for i in range(30)})
    assert distinct.caption.startswith("the 25 lowest of 30 classes (all")  # no tie at the cut: nothing to say
    small = per_class_table(dict(list(accuracy.items())[:10]))
    assert len(small.data) == 10 and small.caption is None


HISTORY = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "train_accuracy": 0.1 * e,
            "val_accuracy": 0.08 * e, "seconds": 1.0, "lr": 0.1} for e in range(4)]


def test_plot_history_has_a_loss_panel_and_a_metric_panel():
    fig = plot_history(HISTORY)
    loss_ax, metric_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train_loss", "val_loss"]
    assert [line.get_label() for line in metric_ax.lines] == ["train_accuracy", "val_accuracy"]
    assert list(metric_ax.lines[1].get_ydata()) == pytest.approx([0.0, 0.08, 0.16, 0.24])
    fig.canvas.draw()
    for ax in (loss_ax, metric_ax, plot_curves({"v1": HISTORY[:3]}, "val_accuracy").axes[0]):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)  # epochs, not 0.25 steps


def test_the_chance_line_splits_when_val_batches_are_smaller_than_trainings():
    same, split = plot_history(HISTORY).axes[1], plot_history(HISTORY).axes[1]
    mark_chance(same, 1 / 127, 1 / 127)
    mark_chance(split, 1 / 39, 1 / 127)
    assert [line.get_label() for line in same.lines[2:]] == ["chance"]
    assert [(line.get_label(), line.get_ydata()[0]) for line in split.lines[2:]] == [
        ("chance (train batches)", 1 / 127), ("chance (val batches)", 1 / 39)]


def test_plot_curves_overlays_runs_that_have_the_key():
    runs = {"v1": HISTORY, "v2": HISTORY[:2], "v3": [{"epoch": 0, "train_loss": 1.0}]}
    fig = plot_curves(runs, "val_accuracy")
    assert [line.get_label() for line in fig.axes[0].lines] == ["v1", "v2"]
    with pytest.raises(ConfigError, match="no run"):
        plot_curves(runs, "val_top5")


def test_image_grid_one_axes_per_image_uint8_or_float():
    images = torch.randint(0, 256, (7, 3, 5, 6), dtype=torch.uint8)
    fig = image_grid(images, titles=[f"#{i}" for i in range(7)], ncols=3)
    assert len(fig.axes) == 7 and all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[2].get_title() == "#2"
    shown = fig.axes[4].images[0].get_array()
    assert np.array_equal(np.asarray(shown), images[4].permute(1, 2, 0).numpy())
    as_float = image_grid(images.float() / 255, ncols=3)
    assert np.array_equal(np.asarray(as_float.axes[4].images[0].get_array()), np.asarray(shown))
    with pytest.raises(DataError):
        image_grid(images, titles=["only one"])
