"""Stage 4: where does the model still fail? Confident mistakes, unsure successes (with where the classifier
looked: Grad-CAM), worst classes, and the pretext task's own worst examples traced back to their source images."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core.device import resolve_device
from ..core.errors import ImgwangError
from ..evaluate.gradcam import cams_for
from ..evaluate.metrics import per_class_accuracy
from ..evaluate.review import least_confident_correct, pretext_mistakes, top_mistakes, worst_classes
from ..runs import recorded_config
from .pretrain import build_pretext
from .stage_data import load_stage_data, pretext_split


def load_predictions(run_dir: Path) -> dict:
    path = run_dir / "predictions.pt"
    if not path.exists():
        raise ImgwangError(f"{path} does not exist: run `make evaluate VERSION={run_dir.name}` first")
    return torch.load(path, map_location="cpu", weights_only=True)


def run_review(cfg: dict, run_dir: Path, pretrain_cfg: dict | None = None) -> dict:
    """pretrain_cfg: how the pretext model was made; by default as run.json records the version's pretrain."""
    start = time.time()
    pretrain_cfg = pretrain_cfg or recorded_config(run_dir, "pretrain") or None
    preds = load_predictions(run_dir)
    probs, labels, rows, names = preds["probs"], preds["labels"], preds["rows"], preds["class_names"]
    k = cfg["n_show"]
    mistakes = top_mistakes(probs, labels, k=k)
    unsure = least_confident_correct(probs, labels, k=k)
    for item in (*mistakes, *unsure):  # eval-set position -> cache row, for showing the image
        item["row"] = int(rows[item["index"]])
    sd = load_stage_data(cfg["data"], cfg["size"])
    result = {
        "data": sd, "mistakes": mistakes, "unsure": unsure, "class_names": names,
        "worst_classes": worst_classes(per_class_accuracy(probs.argmax(1), labels, names), n=5),
        "n_val_mistakes": int((probs.argmax(1) != labels).sum()), "pretext": None,
        "split": preds.get("split", "val"),  # the scoring set evaluate predicted (files from before: val)
    }
    result["cams"] = where_it_looked(cfg, run_dir, sd, names, mistakes, unsure)
    model_file = run_dir / "pretext_model.pt"
    if pretrain_cfg is not None and model_file.exists():
        device = resolve_device(cfg["device"])
        task, model = build_pretext(pretrain_cfg)
        model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True), strict=True)
        model.to(device)
        # the pretext model sees images at the size it was trained at, which need not be the transfer size
        same = (pretrain_cfg["data"], pretrain_cfg["size"]) == (cfg["data"], cfg["size"])
        psd = sd if same else load_stage_data(pretrain_cfg["data"], pretrain_cfg["size"])
        _, held_out, _ = pretext_split(psd, pretrain_cfg.get("pretrain_on_val", False))  # images it never saw
        val = psd.loader(held_out, batch_size=pretrain_cfg["bs"], device=device, mode="eval")
        result["pretext"] = {"task": task, "data": psd,
                             "mistakes": pretext_mistakes(task, model, val, device, k=k, seed=cfg["seed"])}
    result["wall_s"] = time.time() - start
    return result


N_CAMS = 8  # columns of a Grad-CAM figure: enough to see a pattern, few enough to read


def where_it_looked(cfg: dict, run_dir: Path, sd, names: list[str], mistakes: list[dict], unsure: list[dict]) -> dict:
    """Grad-CAM of the classifier whose predictions evaluate saved (classifier.pt, the last repeat's) over the most
    confident mistakes and the least confident correct predictions."""
    from .evaluate import load_classifier

    device = resolve_device(cfg["device"])
    model = load_classifier(run_dir, cfg["arch"], len(names), img_size=cfg["size"])
    return {"mistakes": cams_for(model, sd, mistakes[:N_CAMS], device, cfg["bs"]),
            "unsure": cams_for(model, sd, unsure[:N_CAMS], device, cfg["bs"])}


def review_scraps(cfg: dict, result: dict) -> dict:
    """What 04-review glues for `make compare` (figures apart)."""
    return {"config": cfg, "n_val_mistakes": result["n_val_mistakes"], "worst_classes": result["worst_classes"],
            "review_wall_s": result["wall_s"]}
