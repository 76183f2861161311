"""Stage 3: score the fine-tuned classifiers on the scoring set, and the frozen encoder by kNN and a linear probe.

Every repeat of transfer is scored: accuracy and per-class accuracy are the mean over the repeats'
classifiers (so eval_acc equals transfer's val_acc), the confusion matrix is their sum. The frozen
encoder is set beside a random-init encoder of the same architecture (its BatchNorm statistics estimated
on fitting-set images first: imgwang.evaluate.bn_stats) and beside raw pixels (imgwang.evaluate.pixels); the
features each is scored on are extracted once and also give the nearest neighbours of a fixed set of images,
a t-SNE map and how the features spread over their main directions (evaluate/neighbours.py, embedding.py,
directions.py).
The scoring set is val/, or with split "dev" the held-out fifth of train/, and then the kNN memory and the
probe's training set leave it out too.
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from pathlib import Path

import torch

from ..core import atomic
from ..core.device import resolve_device
from ..core.errors import ImgwangError
from ..data.imagewang import class_label
from ..data.split import scoring_split as split_for_scoring
from ..evaluate.bn_stats import data_bn_stats
from ..evaluate.directions import describe_directions, directions_of
from ..evaluate.embedding import feature_maps
from ..evaluate.features import extract_features, predict
from ..evaluate.knn import describe_knn, knn_correct
from ..evaluate.linear_probe import MAX_FOLDS, ProbeNotConverged, describe, linear_probe
from ..evaluate.metrics import accuracy, confusion_matrix, per_class_accuracy
from ..evaluate.neighbours import neighbour_table, pick_queries
from ..evaluate.paired import describe_paired, paired_accuracy
from ..evaluate.pixels import pixel_features, standardise
from ..models.checkpoint import load_encoder
from ..models.encoders import create_encoder
from ..runs import encoder_path, recorded_config
from .random_spread import describe_spread, random_knn_spread
from .stage_data import load_stage_data
from .transfer import build_classifier, repeat_classifier_path


def load_classifier(run_dir: Path, arch: str, n_classes: int, path: Path | None = None, img_size: int | None = None):
    path = path or run_dir / "classifier.pt"
    if not path.exists():
        raise ImgwangError(f"{path} does not exist: run `make transfer VERSION={run_dir.name}` first")
    model = build_classifier(arch, n_classes, None, img_size=img_size)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model


def classifier_paths(run_dir: Path) -> list[Path]:
    """One classifier per transfer repeat; a run made before repeats were kept has classifier.pt only."""
    paths, r = [], 0
    while repeat_classifier_path(run_dir, r).exists():
        paths.append(repeat_classifier_path(run_dir, r))
        r += 1
    return paths or [run_dir / "classifier.pt"]


def scoring_split(cfg: dict, run_dir: Path) -> str:
    """The split given, else the one transfer scored on (imgwang.data.split.scoring_split)."""
    tuned_on = recorded_config(run_dir, "transfer").get("split")
    return split_for_scoring(cfg.get("split"), tuned_on, run_dir.name)


def frozen_encoders(cfg: dict, runs_dir: Path) -> dict:
    """The encoder under test (pretrained, when there is one) and a random-init one of the same arch."""
    torch.manual_seed(cfg["seed"])
    encoders = {"random": create_encoder(cfg["arch"], cfg["size"])}
    if cfg["from_version"] != "none":
        pretrained = create_encoder(cfg["arch"], cfg["size"])
        load_encoder(pretrained, encoder_path(runs_dir, cfg["from_version"]))
        encoders = {"pretrained": pretrained, **encoders}
    return encoders


def run_evaluate(cfg: dict, run_dir: Path, runs_dir: Path) -> dict:
    start = time.time()
    device = resolve_device(cfg["device"])
    split = scoring_split(cfg, run_dir)
    sd = load_stage_data(cfg["data"], cfg["size"])
    names = [class_label(c) for c in sd.classes]
    fit_rows, fit_labels, score_rows, score_labels = sd.labelled(split)
    val = sd.loader(score_rows, score_labels, batch_size=cfg["bs"], device=device, mode="eval")
    accs, per_class, confusion = [], [], 0
    for path in classifier_paths(run_dir):
        model = load_classifier(run_dir, cfg["arch"], len(names), path, cfg["size"]).to(device)
        probs, labels, rows = predict(model, val, device)
        pred = probs.argmax(1)
        accs.append(accuracy(pred, labels))
        per_class.append(per_class_accuracy(pred, labels, names))
        confusion = confusion + confusion_matrix(pred, labels, len(names))
    print(f"{len(accs)} fine-tuned classifier(s) scored on {len(score_rows)} {split} images")
    save_predictions(run_dir, sd, probs, labels, rows, names, split)  # the last repeat's, as classifier.pt (review)

    train = sd.loader(fit_rows, fit_labels, batch_size=cfg["bs"], device=device, mode="eval")
    frozen, spaces, correct = {}, {}, {}  # spaces: the features of each, extracted once, for the scores and the pictures
    for name, encoder in frozen_encoders(cfg, runs_dir).items():
        estimated, (tf, tl, tr), (vf, vl, vr) = frozen_features(encoder, name == "random", cfg, sd, fit_rows, train,
                                                                val, device)
        if estimated:
            print(f"random: BatchNorm statistics estimated on {estimated} images of the fitting set")
        frozen[name] = frozen_scores(cfg, tf, tl, vf, vl, len(names), name, split)
        correct[name] = frozen[name].pop("knn_correct")
        spaces[name] = (tf, tl, tr, vf, vl, vr)
    (tf, tl, tr), (vf, vl, vr) = pixel_features(train), pixel_features(val)
    tf, vf = standardise(tf, vf)
    frozen["pixels"] = frozen_scores(cfg, tf, tl, vf, vl, len(names), "pixels", split)
    correct["pixels"] = frozen["pixels"].pop("knn_correct")
    spaces["pixels"] = (tf, tl, tr, vf, vl, vr)
    under_test = frozen.get("pretrained", frozen["random"])
    spread = random_knn_spread(cfg, sd, fit_rows, train, val, device, len(names), frozen["random"]["knn_acc"])
    print(describe_spread(spread, frozen["pretrained"]["knn_acc"] if "pretrained" in frozen else None))
    paired = knn_against_references(correct, split)
    seen = seen_spaces(spaces, cfg["seed"])
    for name, directions in seen["spreads"].items():
        print(describe_directions(name, directions))
    return {
        "eval_acc": sum(accs) / len(accs), "eval_accs": accs, "split": split,
        "per_class_acc": {c: sum(p[c] for p in per_class) / len(per_class) for c in per_class[0]},
        "confusion": confusion, "class_names": names,
        **{key: under_test[key] for key in ("knn_acc", "linear_acc", "linear_wd", "linear_cv_acc")}, "frozen": frozen,
        "knn_paired": paired, "random_spread": spread,
        "probs": probs, "labels": labels, "rows": rows, **seen, "data": sd, "wall_s": time.time() - start,
    }


def frozen_features(encoder, random_init: bool, cfg: dict, sd, fit_rows, train, val, device):
    """An encoder's features on the fitting and the scoring loader -> (images its BatchNorm statistics were estimated
    on, (features, labels, rows) of each). A random-init encoder gets them estimated first: untouched statistics
    (mean 0, var 1) would lower the bar (imgwang.evaluate.bn_stats)."""
    encoder.to(device)
    estimated = data_bn_stats(encoder, sd, fit_rows, cfg["bs"], device, seed=cfg["seed"]) if random_init else 0
    return estimated, extract_features(encoder, train, device), extract_features(encoder, val, device)


def knn_against_references(correct: dict, split: str) -> dict:
    """The pretrained encoder's kNN against each reference's on the same scoring images (imgwang.evaluate.paired),
    from each space's per-image kNN results: {reference: paired_accuracy result}; {} without a pretrained encoder."""
    if "pretrained" not in correct:
        return {}
    paired = {}
    for reference, label in (("random", "random-init"), ("pixels", "raw pixels")):
        paired[reference] = paired_accuracy(correct["pretrained"], correct[reference])
        print(describe_paired(paired[reference], f"kNN, pretrained against {label}", split))
    return paired


def seen_spaces(spaces: dict, seed: int) -> dict:
    """What each space groups together, from the features already extracted: the nearest training images of a
    fixed set of scoring images (every space, raw pixels included), and a t-SNE map of the encoders' scoring
    features (pretrained beside random-init; pixels have no encoder to show), and how the encoders' fitting-set
    features spread over their main directions (evaluate/directions.py)."""
    vl = next(iter(spaces.values()))[4]
    queries = pick_queries(vl, seed=seed)
    encoders = {name: s[3] for name, s in spaces.items() if name != "pixels"}
    spreads = {name: directions_of(s[0], s[1]) for name, s in spaces.items() if name != "pixels"}
    return {"neighbours": neighbour_table(spaces, queries), "feature_maps": feature_maps(encoders, vl, seed=seed),
            "spreads": spreads}


def evaluate_scraps(cfg: dict, result: dict) -> dict:
    """What 03-evaluate glues for `make compare` (figures apart)."""
    scraps = {
        "config": cfg, "eval_acc": result["eval_acc"], "eval_accs": result["eval_accs"], "split": result["split"],
        "knn_acc": result["knn_acc"], "linear_acc": result["linear_acc"], "linear_wd": result["linear_wd"],
        "linear_cv_acc": result["linear_cv_acc"], "per_class_acc": result["per_class_acc"],
        "evaluate_wall_s": result["wall_s"],
    }
    for reference in ("random", "pixels"):  # the frozen references, scored by the same rules
        for key in ("knn_acc", "linear_acc", "linear_wd", "linear_cv_acc"):
            scraps[f"{key}_{reference}"] = result["frozen"][reference][key]
        if reference in result.get("knn_paired", {}):  # the pretrained kNN against it, on the same images
            paired = result["knn_paired"][reference]
            scraps.update({f"knn_vs_{reference}_{key}": paired[key] for key in ("ci_low", "ci_high", "p_value")})
    spread = result["random_spread"]  # the random-init kNN over several inits (stages.random_spread)
    scraps.update({"knn_acc_random_inits": spread["knn_accs"], "knn_acc_random_mean": spread["mean"],
                   "knn_acc_random_sd": spread["sd"]})
    # A probe fitted without CV (one image per class) has no CV accuracy to glue (and scrapbook glues no None).
    return {key: value for key, value in scraps.items() if not (key.startswith("linear_cv_acc") and value is None)}


def frozen_scores(cfg: dict, tf, tl, vf, vl, n_classes: int, name: str = "", split: str = "val") -> dict:
    """kNN and the linear probe of frozen features (fitting set -> scoring set `split`). The probe's L2
    strength is chosen by cross-validation on the fitting set alone: every reference (pretrained, random-init,
    raw pixels) is scored by this same rule. The printed lines name the sets (dev: the rest of train/ fits).
    `knn_correct` holds each scoring image's kNN result, for the paired comparison (imgwang.evaluate.paired)."""
    k, t = cfg.get("knn_k", 20), cfg.get("knn_t", 0.07)
    correct = knn_correct(tf, tl, vf, vl, k=k, temperature=t, n_classes=n_classes)
    knn = correct.float().mean().item()
    with warnings.catch_warnings():  # the printed line below says which fits did not converge, once
        warnings.simplefilter("ignore", ProbeNotConverged)
        probe = linear_probe(tf, tl, vf, vl, n_classes=n_classes, max_folds=cfg.get("probe_folds", MAX_FOLDS),
                             seed=cfg.get("seed", 0))
    fitted_on = "train" if split == "val" else f"train without {split}"
    print(describe_knn(knn, k, t, name, scored_on=split))
    print(describe(probe, f"{name}: linear probe" if name else "linear probe", scored_on=split, fitted_on=fitted_on))
    return {"knn_acc": knn, "linear_acc": probe["acc"], "linear_wd": probe["wd"], "linear_cv_acc": probe["cv_acc"],
            "linear_cv_std": probe["cv_std"], "linear_folds": probe["folds"], "linear_converged": probe["converged"],
            "knn_correct": correct.numpy()}  # per scoring image, for the paired comparison


def save_predictions(run_dir: Path, sd, probs, labels, rows, names, split: str = "val") -> None:
    """predictions.pt (probabilities, labels, cache rows, the split they score) and a readable predictions.csv
    for review."""
    atomic.torch_save({"probs": probs, "labels": labels, "rows": rows, "class_names": names, "split": split},
                      run_dir / "predictions.pt")
    lines = [["row", "path", "true", "pred", "prob_pred", "prob_true"]]
    pred = probs.argmax(1)
    for i in range(len(labels)):
        p, t = int(pred[i]), int(labels[i])
        lines.append([int(rows[i]), str(sd.cache.paths[int(rows[i])]), names[t], names[p],
                      f"{float(probs[i, p]):.4f}", f"{float(probs[i, t]):.4f}"])
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    atomic.write_text(run_dir / "predictions.csv", buf.getvalue())
