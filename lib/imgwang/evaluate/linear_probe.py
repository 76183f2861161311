"""Linear probe: multinomial logistic regression on standardised frozen features, its L2 strength chosen
by cross-validation on the train features alone.

A barely regularised probe fits a few labels per class exactly and then measures the probe, not the
features. So, as in standard linear evaluation (SimCLR's transfer evaluation, Chen et al. 2020 appendix B,
and Kornblith et al. 2019, fit an L2-regularised multinomial logistic regression with L-BFGS and pick the
strength on a part of train held out; scikit-learn's LogisticRegressionCV does it by k-fold), the strength
is chosen on train only:

  1. stratified k-fold over the train features, k = min(`max_folds`, smallest class count), at least 2
     (when every class has a single image nothing can be held out: no CV, and the strongest strength, which
     all-tied CV would have chosen too);
  2. for every strength in `WD_GRID`: standardise with the fold's own train statistics, fit, score the
     held-out fold; the strength with the best mean fold accuracy wins (ties: the stronger one);
  3. refit on all train features at that strength and score val once. The refit follows the same
     warm-started path as each fold (strongest first, each fit starting at the previous solution, down to the
     chosen strength), so the model scored on val is the kind of solution CV scored, not a cold start that
     could stop elsewhere on a flat optimum.

Convergence is recorded, not assumed: every fit that stops at MAX_ITER L-BFGS iterations counts as not
converged; the result says which strengths' fold fits did not converge and whether the final fit did, and a
final fit that did not converge raises a ProbeNotConverged warning (its accuracy may be off).

Val is read only in step 3, so its labels cannot change the choice. The strength `wd` is the λ of
    mean cross-entropy + λ/2 · ‖W‖²     (scikit-learn's C = 1 / (λ · n_fit); the bias is not penalised)
which means the same for a fold and for the whole train set. It is not AdamW's decoupled weight decay:
the earlier probe (AdamW, weight decay 1e-4, 100 epochs) had no such comparable scale.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..core.errors import ConfigError, DataError

# 1e-4, 3.2e-4, ..., 100: half decades. Past 100 the weights are so small that the ranking of the classes no
# longer changes (it tends to the nearest class mean of the standardised features).
WD_GRID = tuple(float(f"{v:.1e}") for v in np.logspace(-4, 2, 13))
MAX_FOLDS = 5
MAX_ITER = 1000  # lbfgs iterations per fit; the weakest strengths may stop short on separable data (recorded)


class ProbeNotConverged(UserWarning):
    """The probe's final fit stopped at its iteration cap: the scored model is not the optimum CV chose."""


def _check(feats, labels, n_classes: int, split: str):
    feats = torch.as_tensor(feats).float().cpu().numpy().astype(np.float64)
    labels = torch.as_tensor(labels).long().cpu().numpy()
    if feats.ndim != 2 or len(feats) != len(labels) or len(feats) == 0:
        raise DataError(f"linear probe {split}: need (N, D) features and N labels, got {feats.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"linear probe {split}: labels must be in 0..{n_classes - 1} (no unlabelled -1 rows), "
                        f"found {labels.min()}..{labels.max()}")
    return feats, labels


def n_folds(labels: np.ndarray, max_folds: int = MAX_FOLDS) -> int:
    """Folds for the stratified split: every class in every held-out fold when it can be, at least 2; 0 when
    every class has a single image (a held-out image's class would be missing from its fit)."""
    counts = np.bincount(labels)[np.unique(labels)]
    if counts.max() < 2:
        return 0
    return max(2, min(int(max_folds), int(counts.min())))


class _Fitted:
    """A fitted probe: standardisation with the fit rows' statistics, then (when there are more dimensions
    than rows) projection onto the rows' span, then the logistic regression."""

    def __init__(self, x: np.ndarray):
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x)  # constant features keep scale 1 instead of a division by 0
        xs = self.scaler.transform(x)
        # An L2-penalised linear model's weights lie in the span of its training rows (representer
        # theorem), so fitting in that basis gives the same predictions with at most n instead of D
        # dimensions: raw pixels (D in the thousands) on a few hundred labels fit in seconds.
        self.basis = np.linalg.svd(xs, full_matrices=False)[2].T if xs.shape[1] > xs.shape[0] else None
        self.inputs = xs if self.basis is None else xs @ self.basis
        self.model = None
        self.converged = None  # whether the last fit ended before its iteration cap

    def transform(self, x: np.ndarray) -> np.ndarray:
        xs = self.scaler.transform(x)
        return xs if self.basis is None else xs @ self.basis

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.transform(x))


def _path(x: np.ndarray, y: np.ndarray, strengths, max_iter: int = MAX_ITER):
    """Yield (wd, fitted) for each strength: one model warm-started along the path, so each fit begins at
    the previous solution; `fitted.converged` says whether that fit ended before `max_iter` iterations
    (callers silence sklearn's ConvergenceWarning with `quiet_convergence` and report this instead)."""
    from sklearn.linear_model import LogisticRegression

    fitted = _Fitted(x)
    fitted.model = LogisticRegression(max_iter=max_iter, warm_start=True)
    for wd in strengths:
        fitted.model.set_params(C=1.0 / (wd * len(x)))
        fitted.model.fit(fitted.inputs, y)
        fitted.converged = int(np.max(fitted.model.n_iter_)) < max_iter
        yield wd, fitted


def path_to(grid, wd: float) -> list[float]:
    """The warm-start path CV walks, strongest first, down to `wd` (the refit walks the same one)."""
    return [v for v in sorted(grid, reverse=True) if v >= wd]


def _fold_scores(x, y, fit_rows, held_rows, grid, max_iter: int = MAX_ITER) -> dict:
    # strongest first: the most regularised fit is the easiest start for the next
    return {wd: (float((fitted.predict(x[held_rows]) == y[held_rows]).mean()), fitted.converged)
            for wd, fitted in _path(x[fit_rows], y[fit_rows], path_to(grid, min(grid)), max_iter)}


def cross_validate(x: np.ndarray, y: np.ndarray, grid=WD_GRID, max_folds: int = MAX_FOLDS, seed: int = 0,
                   max_iter: int = MAX_ITER) -> dict:
    """Mean and std of held-out fold accuracy per strength, and how many of its fold fits hit the iteration
    cap: {"folds": k, "grid": [{"wd", "cv_acc", "cv_std", "not_converged"}]}."""
    from sklearn.model_selection import StratifiedKFold

    k = n_folds(y, max_folds)
    if k == 0:  # nothing to hold out: no fold scores at any strength
        return {"folds": 0, "grid": [{"wd": wd, "cv_acc": None, "cv_std": None, "not_converged": 0} for wd in grid]}
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")  # a class with a single image
        splits = list(splitter.split(x, y))
    with quiet_convergence(), one_blas_thread(), ThreadPoolExecutor(min(k, os.cpu_count() or 1)) as pool:  # folds in parallel
        folds = list(pool.map(lambda s: _fold_scores(x, y, *s, grid, max_iter), splits))
    rows = [{"wd": wd, "cv_acc": float(np.mean([f[wd][0] for f in folds])),
             "cv_std": float(np.std([f[wd][0] for f in folds], ddof=1)),
             "not_converged": sum(not f[wd][1] for f in folds)} for wd in grid]
    return {"folds": k, "grid": rows}


@contextlib.contextmanager
def quiet_convergence():
    """sklearn's ConvergenceWarning off for the block: `_Fitted.converged` records it. Set once in the calling
    thread around the fold threads, since a warnings filter changed inside a thread races with the others."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def one_blas_thread():
    """BLAS on one thread per fit. These matrices are small: a BLAS thread team spin-waits on a busy
    machine, measured 50-100x slower on 2 shared cores than one thread; folds run in parallel instead."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def choose_wd(rows: list[dict]) -> dict:
    """The row with the best mean fold accuracy; among equals (all of them, without CV) the strongest."""
    return max(rows, key=lambda r: (round(r["cv_acc"] or 0.0, 12), r["wd"]))


def linear_probe(train_feats, train_labels, val_feats, val_labels, n_classes: int, grid=WD_GRID,
                 max_folds: int = MAX_FOLDS, seed: int = 0, max_iter: int = MAX_ITER) -> dict:
    """-> {"acc": val accuracy, "wd": chosen λ, "cv_acc"/"cv_std": its mean/std fold accuracy, "folds": k,
    "grid": every strength's row, "at_edge": the choice is the grid's first or last value,
    "converged": the final fit ended before `max_iter` iterations (else a ProbeNotConverged warning),
    "cv_not_converged": fold fits at the chosen strength that hit the cap, "val_pred": (N_val,) long}."""
    grid = tuple(float(v) for v in grid)
    if not grid or min(grid) <= 0 or int(max_folds) < 2:
        raise ConfigError(f"linear probe needs positive L2 strengths and max_folds >= 2; got {grid}, {max_folds}")
    x_train, y_train = _check(train_feats, train_labels, n_classes, "train")
    x_val, y_val = _check(val_feats, val_labels, n_classes, "val")
    if x_train.shape[1] != x_val.shape[1]:
        raise DataError(f"linear probe: train features have {x_train.shape[1]} dims, val {x_val.shape[1]}")
    if len(np.unique(y_train)) < 2:
        raise DataError("linear probe: the train features hold a single class; nothing to separate")

    cv = cross_validate(x_train, y_train, grid, max_folds, seed, max_iter)
    best = choose_wd(cv["grid"])
    with quiet_convergence(), one_blas_thread():
        *_, (_, fitted) = _path(x_train, y_train, path_to(grid, best["wd"]), max_iter)  # CV's warm-started path
        val_pred = fitted.predict(x_val)  # the only use of val
    if not fitted.converged:
        warnings.warn(f"linear probe: the final fit at L2 strength {best['wd']:.1e} stopped at {max_iter} L-BFGS "
                      "iterations without converging; its accuracy may be off", ProbeNotConverged, stacklevel=2)
    return {
        "acc": float((val_pred == y_val).mean()), "wd": best["wd"], "cv_acc": best["cv_acc"], "cv_std": best["cv_std"],
        "folds": cv["folds"], "grid": cv["grid"], "at_edge": bool(cv["folds"]) and best["wd"] in (min(grid), max(grid)),
        "converged": bool(fitted.converged), "cv_not_converged": best["not_converged"],
        "val_pred": torch.from_numpy(val_pred).long(),
    }


def describe(result: dict, name: str = "linear probe", scored_on: str = "val", fitted_on: str = "train") -> str:
    """One line: the accuracy on the scoring set and how the strength was chosen on the fitting set."""
    edge = " (at the edge of the grid)" if result["at_edge"] else ""
    unconverged = [text for text, bad in (("the final fit", not result.get("converged", True)),
                                          (f"{result.get('cv_not_converged', 0)} of its fold fits",
                                           result.get("cv_not_converged", 0))) if bad]
    caveat = f"; did not converge: {' and '.join(unconverged)}" if unconverged else ""
    if not result["folds"]:
        return (f"{name}: {scored_on} {100 * result['acc']:.2f}% at L2 strength {result['wd']:.1e}, the grid's "
                f"strongest, without CV: each class has one image in {fitted_on}{caveat}")
    return (f"{name}: {scored_on} {100 * result['acc']:.2f}% at L2 strength {result['wd']:.1e}{edge}, chosen by "
            f"{result['folds']}-fold CV on {fitted_on} ({100 * result['cv_acc']:.2f}% ± {100 * result['cv_std']:.2f})"
            f"{caveat}")
