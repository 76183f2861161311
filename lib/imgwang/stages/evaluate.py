"""Stage 3: score the fine-tuned classifier on val, and the frozen encoder by kNN and a linear probe."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import torch

from ..data.imagewang import class_label
from ..device import resolve_device
from ..errors import ImgwangError
from ..evaluate.features import extract_features, predict
from ..evaluate.knn import knn_accuracy
from ..evaluate.linear_probe import linear_probe
from ..evaluate.metrics import accuracy, confusion_matrix, per_class_accuracy
from ..models.checkpoint import atomic_torch_save, load_encoder
from ..models.encoders import create_encoder
from ..runs import atomic_write_text, encoder_path
from .data import load_stage_data
from .transfer import build_classifier


def load_classifier(run_dir: Path, arch: str, n_classes: int):
    path = run_dir / "classifier.pt"
    if not path.exists():
        raise ImgwangError(f"{path} does not exist: run `make transfer VERSION={run_dir.name}` first")
    model = build_classifier(arch, n_classes, None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model


def frozen_encoders(cfg: dict, runs_dir: Path) -> dict:
    """The encoder under test (pretrained, when there is one) and a random-init one of the same arch."""
    torch.manual_seed(cfg["seed"])
    encoders = {"random": create_encoder(cfg["arch"])}
    if cfg["from_version"] != "none":
        pretrained = create_encoder(cfg["arch"])
        load_encoder(pretrained, encoder_path(runs_dir, cfg["from_version"]))
        encoders = {"pretrained": pretrained, **encoders}
    return encoders


def run_evaluate(cfg: dict, run_dir: Path, runs_dir: Path) -> dict:
    start = time.time()
    device = resolve_device(cfg["device"])
    sd = load_stage_data(cfg["data"], cfg["size"])
    names = [class_label(c) for c in sd.classes]
    model = load_classifier(run_dir, cfg["arch"], len(names)).to(device)
    val = sd.loader(sd.val_rows, sd.val_labels, batch_size=cfg["bs"], device=device, mode="eval")
    probs, labels, rows = predict(model, val, device)
    pred = probs.argmax(1)
    save_predictions(run_dir, sd, probs, labels, rows, names)

    train = sd.loader(sd.train_rows, sd.train_labels, batch_size=cfg["bs"], device=device, mode="eval")
    frozen = {}
    for name, encoder in frozen_encoders(cfg, runs_dir).items():
        encoder.to(device)
        tf, tl, _ = extract_features(encoder, train, device)
        vf, vl, _ = extract_features(encoder, val, device)
        frozen[name] = {
            "knn_acc": knn_accuracy(tf, tl, vf, vl, k=cfg["knn_k"], temperature=cfg["knn_t"], n_classes=len(names)),
            "linear_acc": linear_probe(tf, tl, vf, vl, n_classes=len(names), epochs=cfg["probe_epochs"], seed=cfg["seed"])["acc"],
        }
    under_test = frozen.get("pretrained", frozen["random"])
    return {
        "eval_acc": accuracy(pred, labels), "per_class_acc": per_class_accuracy(pred, labels, names),
        "confusion": confusion_matrix(pred, labels, len(names)), "class_names": names,
        "knn_acc": under_test["knn_acc"], "linear_acc": under_test["linear_acc"], "frozen": frozen,
        "probs": probs, "labels": labels, "rows": rows, "wall_s": time.time() - start,
    }


def evaluate_scraps(cfg: dict, result: dict) -> dict:
    """What 03-evaluate glues for `make compare` (figures apart)."""
    return {
        "config": cfg, "eval_acc": result["eval_acc"], "knn_acc": result["knn_acc"], "linear_acc": result["linear_acc"],
        "per_class_acc": result["per_class_acc"], "knn_acc_random": result["frozen"]["random"]["knn_acc"],
        "linear_acc_random": result["frozen"]["random"]["linear_acc"], "evaluate_wall_s": result["wall_s"],
    }


def save_predictions(run_dir: Path, sd, probs, labels, rows, names) -> None:
    """predictions.pt (probabilities, labels, cache rows) and a readable predictions.csv for review."""
    atomic_torch_save({"probs": probs, "labels": labels, "rows": rows, "class_names": names}, run_dir / "predictions.pt")
    lines = [["row", "path", "true", "pred", "prob_pred", "prob_true"]]
    pred = probs.argmax(1)
    for i in range(len(labels)):
        p, t = int(pred[i]), int(labels[i])
        lines.append([int(rows[i]), str(sd.cache.paths[int(rows[i])]), names[t], names[p],
                      f"{float(probs[i, p]):.4f}", f"{float(probs[i, t]):.4f}"])
    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    atomic_write_text(run_dir / "predictions.csv", buf.getvalue())
