"""Linear probe: the L2 strength is chosen by cross-validation on train alone, then val is scored once."""

import numpy as np
import pytest
import torch

from imgwang.core.errors import ConfigError, DataError
from imgwang.evaluate.linear_probe import (
    WD_GRID,
    ProbeNotConverged,
    _path,
    choose_wd,
    describe,
    linear_probe,
    n_folds,
    path_to,
)


def gaussian_classes(rng, per_class, n_classes=5, dim=80, spread=0.3, seed=1):
    """Class means drawn once (seed) in `dim` dims, unit Gaussian noise around them. With 20 labels per
    class and 80 dims (100 labels, as on a small labelled set) the classes overlap and a weakly
    regularised probe fits the noise; a strongly regularised one stays near the class means."""
    means = np.random.default_rng(seed).normal(0, spread, (n_classes, dim))  # the same for train and val
    y = np.repeat(np.arange(n_classes), per_class)
    return means[y] + rng.normal(0, 1, (len(y), dim)), y


def test_the_chosen_strength_beats_the_weakest_on_many_dims_few_labels():
    gains = []
    for seed in range(3):
        rng = np.random.default_rng(10 + seed)
        (xt, yt), (xv, yv) = gaussian_classes(rng, 20), gaussian_classes(rng, 100)
        result = linear_probe(xt, yt, xv, yv, n_classes=5, seed=seed)
        _, weak = next(_path(xt, yt, [min(WD_GRID)]))
        gains.append(result["acc"] - (weak.predict(xv) == yv).mean())
        assert result["wd"] >= 0.1 and result["folds"] == 5
    assert min(gains) > 0 and np.mean(gains) >= 0.04, gains  # measured: +0.10, +0.06, +0.08


def test_val_never_changes_the_choice():
    rng = np.random.default_rng(0)
    (xt, yt), (xv, yv) = gaussian_classes(rng, 6), gaussian_classes(rng, 10)
    a = linear_probe(xt, yt, xv, yv, n_classes=5)
    shuffled = linear_probe(xt, yt, xv, rng.permutation(yv), n_classes=5)
    other_val = linear_probe(xt, yt, rng.normal(size=xv.shape), yv, n_classes=5)
    for b in (shuffled, other_val):
        assert (b["wd"], b["cv_acc"], b["cv_std"], b["grid"]) == (a["wd"], a["cv_acc"], a["cv_std"], a["grid"])
    assert torch.equal(shuffled["val_pred"], a["val_pred"])  # the same model, scored against other labels


def test_deterministic_and_scale_invariant():
    rng = np.random.default_rng(2)
    (xt, yt), (xv, yv) = gaussian_classes(rng, 8, n_classes=4, dim=40), gaussian_classes(rng, 10, n_classes=4, dim=40)
    a = linear_probe(xt, yt, xv, yv, n_classes=4, seed=5)
    b = linear_probe(xt, yt, xv, yv, n_classes=4, seed=5)
    assert a["grid"] == b["grid"] and torch.equal(a["val_pred"], b["val_pred"])
    # standardised with train statistics: a per-dimension affine change of the features gives the same choice
    scale, shift = np.linspace(0.01, 1000, 40), np.linspace(-50, 50, 40)
    c = linear_probe(xt * scale + shift, yt, xv * scale + shift, yv, n_classes=4, seed=5)
    assert c["wd"] == a["wd"] and (c["val_pred"] == a["val_pred"]).float().mean() >= 0.95


def test_more_dims_than_rows_fits_in_the_rows_span_with_the_same_predictions():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 300)), np.repeat(np.arange(4), 10)
    x[np.arange(40), y] += 3.0
    xv = rng.normal(size=(20, 300))
    _, reduced = next(_path(x, y, [0.1]))
    assert reduced.basis is not None and reduced.inputs.shape == (40, 40)
    from sklearn.linear_model import LogisticRegression

    full = LogisticRegression(C=1 / (0.1 * 40), max_iter=5000, tol=1e-10).fit(reduced.scaler.transform(x), y)
    np.testing.assert_allclose(reduced.model.predict_proba(reduced.transform(xv)),
                               full.predict_proba(reduced.scaler.transform(xv)), atol=2e-3)


def test_folds_follow_the_smallest_class():
    assert n_folds(np.array([0] * 30 + [1] * 30)) == 5
    assert n_folds(np.array([0] * 30 + [1] * 3)) == 3
    assert n_folds(np.array([0] * 30 + [1] * 1)) == 2  # at least two folds, even for a single image


def test_a_class_with_one_train_image_still_gets_a_probe():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(21, 8)), np.array([0] * 10 + [1] * 10 + [2])
    result = linear_probe(x, y, rng.normal(size=(6, 8)), np.array([0, 1, 2, 0, 1, 2]), n_classes=3)
    assert result["folds"] == 2 and 0 <= result["acc"] <= 1


def test_one_image_in_every_class_is_probed_at_the_strongest_strength_without_cv():
    """A tiny labelled set (or its dev split) with one fitting image per class: no fold can hold an image out
    with its class still fitted, so there is no CV; the probe still fits and scores, at the grid's strongest."""
    rng = np.random.default_rng(5)
    assert n_folds(np.array([0, 1, 2])) == 0
    means = rng.normal(0, 3, (3, 8))
    result = linear_probe(means + rng.normal(0, 0.1, (3, 8)), np.array([0, 1, 2]),
                          means + rng.normal(0, 0.1, (3, 8)), np.array([0, 1, 2]), n_classes=3)
    assert result["folds"] == 0 and result["wd"] == max(WD_GRID) and result["cv_acc"] is None
    assert result["acc"] == 1.0 and not result["at_edge"]  # well-separated classes: each val image found
    line = describe(result, fitted_on="train without dev")
    assert "without CV: each class has one image in train without dev" in line and "CV on" not in line


def test_ties_go_to_the_stronger_strength_and_the_line_says_what_was_chosen():
    rows = [{"wd": 0.01, "cv_acc": 0.5, "cv_std": 0.1}, {"wd": 1.0, "cv_acc": 0.5, "cv_std": 0.1},
            {"wd": 10.0, "cv_acc": 0.4, "cv_std": 0.1}]
    assert choose_wd(rows)["wd"] == 1.0
    line = describe({"acc": 0.8765, "wd": 100.0, "cv_acc": 0.5, "cv_std": 0.1, "folds": 3, "at_edge": True})
    assert "87.65%" in line and "1.0e+02" in line and "3-fold" in line and "edge of the grid" in line


def test_the_grid_spans_weak_to_strong():
    assert min(WD_GRID) <= 1e-4 and max(WD_GRID) >= 10


def test_bad_input():
    with pytest.raises(DataError, match="0..2"):
        linear_probe(torch.randn(4, 2), torch.tensor([0, 1, 2, 3]), torch.randn(2, 2), torch.tensor([0, 1]), n_classes=3)
    with pytest.raises(DataError, match="single class"):
        linear_probe(torch.randn(4, 2), torch.zeros(4), torch.randn(2, 2), torch.tensor([0, 1]), n_classes=3)
    with pytest.raises(ConfigError):
        linear_probe(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), torch.randn(2, 2), torch.tensor([0, 1]), n_classes=2, grid=[0.0])


def test_separable_features_are_solved():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 20, generator=g)
    scores = x @ torch.randn(20, 3, generator=g)  # classes defined by a linear map: separable by construction
    top2 = scores.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 1.0  # ... with a margin, so a finite sample pins the boundary down
    x, y = x[keep][:450], scores[keep][:450].argmax(1)
    result = linear_probe(x[:300], y[:300], x[300:], y[300:], n_classes=3)
    assert result["acc"] >= 0.97 and result["cv_acc"] >= 0.95


def test_random_labels_score_chance_in_cv_and_on_val():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(800, 256, generator=g)  # more dimensions than training rows: any labelling can be fit
    y = torch.randint(0, 4, (800,), generator=g)
    result = linear_probe(x[:200], y[:200], x[200:], y[200:], n_classes=4)
    assert abs(result["acc"] - 0.25) < 0.08
    assert abs(result["cv_acc"] - 0.25) < 0.12  # held-out folds see through the memorisation too


def test_the_fold_count_parameter_is_checked():
    from imgwang.spec.checks import folds

    assert folds("probe_folds", "5") == 5
    for bad in (1, 2.5, "x"):
        with pytest.raises(ConfigError, match="PROBE_FOLDS="):
            folds("probe_folds", bad)


def test_the_refit_walks_the_warm_started_path_cv_scored():
    """The model scored on val is the end of the same warm-started path each fold walked (strongest first down
    to the chosen strength), on all train rows, not a cold start at the chosen strength."""
    rng = np.random.default_rng(4)
    (xt, yt), (xv, yv) = gaussian_classes(rng, 20), gaussian_classes(rng, 40)
    result = linear_probe(xt, yt, xv, yv, n_classes=5)
    assert path_to(WD_GRID, result["wd"])[0] == max(WD_GRID) and path_to(WD_GRID, result["wd"])[-1] == result["wd"]
    *_, (_, warm) = _path(xt, yt, path_to(WD_GRID, result["wd"]))
    assert torch.equal(result["val_pred"], torch.from_numpy(warm.predict(xv)).long())
    assert result["converged"] and result["cv_not_converged"] == 0
    assert all(row["not_converged"] == 0 for row in result["grid"])  # these fits all converge at MAX_ITER


def test_a_final_fit_that_stops_at_its_iteration_cap_is_flagged_and_warned():
    rng = np.random.default_rng(5)
    (xt, yt), (xv, yv) = gaussian_classes(rng, 20), gaussian_classes(rng, 20)
    with pytest.warns(ProbeNotConverged, match="did not converge|without converging"):
        result = linear_probe(xt, yt, xv, yv, n_classes=5, max_iter=2)
    assert not result["converged"]
    chosen = next(row for row in result["grid"] if row["wd"] == result["wd"])
    assert result["cv_not_converged"] == chosen["not_converged"] >= 1
    assert sum(row["not_converged"] for row in result["grid"]) >= len(WD_GRID)  # most of 5 x 13 fold fits
    assert f"did not converge: the final fit and {chosen['not_converged']} of its fold fits" in describe(result)
