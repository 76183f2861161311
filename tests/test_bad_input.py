"""Bad input through the real entry point: one clear line, exit code 2, before any compute, runs/ unchanged."""

import json
import os
import subprocess

import pytest
import stage  # bin/stage.py: what `make pretrain|transfer|...` runs

from conftest import REPO


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*"))


@pytest.fixture
def runs_dir(tmp_path, lab_env):
    runs = tmp_path / "runs"
    done = runs / "v1"
    done.mkdir(parents=True)
    (done / "01-pretrain.ipynb").write_text("{}")
    (done / "encoder.pt").write_bytes(b"not really")
    (done / "run.json").write_text(json.dumps({"stages": {"pretrain": {"status": "done", "config": {"arch": "tinyconv"}}}}))
    (runs / "v2").mkdir()  # a version without an encoder
    (runs / "v2" / "run.json").write_text("{}")
    (runs / "v4").mkdir()  # fine-tuned, not evaluated
    (runs / "v4" / "run.json").write_text("{}")
    (runs / "v4" / "classifier.pt").write_bytes(b"not really")
    return runs


def not_in_layout(tmp_path):
    folder = tmp_path / "holiday-photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    return str(folder)


def labelled_folder(folder, names):
    """An Imagewang-layout folder of placeholder files (the checks that refuse it read names, not pixels)."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    return str(folder)


def one_class(tmp_path):
    return labelled_folder(tmp_path / "one-class", ("train/cat/a.jpg", "train/cat/b.jpg", "val/cat/c.jpg",
                                                    "val/cat/d.jpg"))


def two_val_images(tmp_path):
    return labelled_folder(tmp_path / "two-val", ("train/cat/a.jpg", "train/cat/b.jpg", "train/dog/c.jpg",
                                                  "train/dog/d.jpg", "val/cat/e.jpg", "val/dog/f.jpg"))


def one_per_class(tmp_path):
    return labelled_folder(tmp_path / "one-each", ("train/cat/a.jpg", "train/dog/b.jpg", "val/cat/c.jpg",
                                                   "val/dog/d.jpg"))


def plain_images(tmp_path):
    folder = tmp_path / "street-photos"
    (folder / "day2").mkdir(parents=True)
    for name in [f"{i:02d}.jpg" for i in range(11)] + ["day2/c.jpg"]:  # 12: every 10th, 2 of them, measure the task
        (folder / name).write_bytes(b"x")
    return str(folder)


# --- concurrency, resume and resource limits (rows below marked "limits") ---

def non_utf8_names(tmp_path):
    """A plain folder of images, one named in Latin-1 (b'caf\\xe9.jpg'), as old cameras and archives do."""
    folder = plain_images(tmp_path)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"), "wb") as f:
        f.write(b"x")
    return folder


def tinyconv_encoder(tmp_path):
    """runs/v5: a real tinyconv encoder, with no architecture recorded in run.json (copied by hand)."""
    import torch

    from imgwang.models.encoders import create_encoder

    run = tmp_path / "runs" / "v5"
    run.mkdir(parents=True)
    torch.save(create_encoder("tinyconv").state_dict(), run / "encoder.pt")
    (run / "run.json").write_text("{}")
    return "v5"


def file_named_v7(tmp_path):
    (tmp_path / "runs" / "v7").write_text("notes, not a run")
    return "v7"


def lacking_device(tmp_path):
    """A device this machine does not have: cuda without a GPU, else one GPU index past the last."""
    import torch

    return "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


FOLDERS = {"{not_in_layout}": not_in_layout, "{plain_images}": plain_images, "{non_utf8}": non_utf8_names,
           "{one_class}": one_class, "{two_val}": two_val_images, "{one_each}": one_per_class,
           "{tinyconv_encoder}": tinyconv_encoder, "{file_v7}": file_named_v7, "{lacking_device}": lacking_device}

CASES = [
    # (stage and arguments, what the one line must say)
    (["pretrain", "--task", "jigsaw"], "unknown TASK='jigsaw'"),
    (["pretrain", "--arch", "resnet1800"], "unknown ARCH='resnet1800'"),
    (["pretrain", "--data", "imagewong"], "unknown DATA='imagewong'"),
    (["pretrain", "--data", "{not_in_layout}"], "holiday-photos"),
    (["pretrain", "--version", "v1", "--data", "sample"], "already exists"),
    (["pretrain", "--epochs", "ten", "--data", "sample"], "EPOCHS='ten' is not a number"),
    (["pretrain", "--bs", "0", "--data", "sample"], "BS='0' must be a positive whole number"),
    (["pretrain", "--size", "-64", "--data", "sample"], "SIZE='-64' must be a positive whole number"),
    (["pretrain", "--lr", "-1", "--data", "sample"], "LR='-1' must be positive"),
    (["pretrain", "--seed", "x", "--data", "sample"], "SEED='x' must be a whole number"),
    (["pretrain", "--data", "sample", "-p", "knn_every", "-1"], "KNN_EVERY=-1 must not be negative"),
    (["pretrain", "--data", "sample", "-p", "pct_positive", "0.7"], "has no parameter pct_positive"),
    (["pretrain", "--data", "sample", "--task", "swav", "-p", "small_min_scale", "0.5"], "small_min_scale"),
    (["pretrain", "--data", "sample", "--task", "dino", "-p", "momentum", "1.5"], "dino momentum must be in [0, 1]"),
    (["pretrain", "--data", "sample", "--task", "patchwork", "-p", "min_gap", "0.2"], "2 x patch_frac + min_gap <= 1"),
    (["pretrain", "--data", "sample", "--comet", "online"], "COMET=online needs COMET_API_KEY"),
    (["pretrain", "--data", "sample", "--comet", "loud"], "unknown COMET='loud'"),
    (["pretrain", "--data", "sample", "--device", "tpu"], "unknown DEVICE='tpu'"),
    (["pretrain", "THREADS=many", "DATA=sample"], "THREADS='many' must be a whole number"),
    (["pretrain", "THREADS=-2", "DATA=sample"], "THREADS='-2' must not be negative"),
    (["transfer", "--version", "v3", "--from", "v9", "--data", "sample"], "FROM=v9: no such run"),
    (["transfer", "--version", "v3", "--from", "v2", "--data", "sample"], "FROM=v2: "),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "warmup", "3"], "unknown parameter 'warmup'"),
    (["evaluate", "--version", "v2", "--data", "sample"], "classifier.pt does not exist"),
    # a mistyped VERSION with DATA left at its default (imagewang, not here): the run folder is named first, no download
    (["transfer", "--version", "v9"], "FROM=v9: no such run"),
    (["evaluate", "--version", "v9"], "v9/classifier.pt does not exist"),
    (["review", "--version", "v9"], "v9/classifier.pt does not exist"),
    (["review", "--version", "v4", "--data", "sample"], "predictions.pt does not exist: run `make evaluate VERSION=v4`"),
    (["pretrain", "--version", "v1", "--resume", "1", "--data", "sample"], "already finished"),
    (["pretrain", "--version", "../v1", "--data", "sample"], "not a valid folder name"),
    (["nonsense"], "unknown stage"),
    (["pretrain", "EPOCH=3", "DATA=sample"], "unknown variable EPOCH"),
    (["transfer", "VERSION=v3", "FROM=v1", "ARCH=resnet18", "DATA=sample"], "ARCH=resnet18 but the pretrain stage of v1"),
    (["pipeline", "--data", "{plain_images}"], "without classes: it can be pretrained on, not used by transfer"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "{plain_images}"], "not used by transfer"),
    (["pretrain", "--bs", "1"], "BS=1 cannot train: BatchNorm layers need two or more images"),
    (["pipeline", "--data", "sample", "--ft-bs", "1"], "FT_BS=1 cannot train"),
    (["pipeline", "--data", "sample", "--ft-epochs", "0.5"], "FT_EPOCHS='0.5' must be a positive whole number"),
    (["pipeline", "--data", "{one_class}"], "has one class in train/ (cat): transfer needs two or more"),
    (["transfer", "VERSION=v3", "FROM=none", "SPLIT=dev", "--data", "{one_each}"], "SPLIT=dev: no class in"),
    (["pretrain", "--task", "unmix", "--data", "{two_val}"], "makes batches of at least 4 images, and"),
    (["pipeline", "--from", "none", "--data", "sample", "-p", "pct_pos", "0.7"], "unknown parameter 'pct_pos'"),
    (["pipeline", "--data", "sample", "-p", "knn_kk", "5"], "unknown parameter 'knn_kk'"),
    (["pipeline", "--data", "sample", "-p", "knn_k", "5", "-p", "probe_folds", "1"], "PROBE_FOLDS=1 must be a whole number of at least 2"),
    (["pipeline", "--data", "sample", "-p", "probe_epochs", "100"], "unknown parameter 'probe_epochs'"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "crop_scale", "[0, 1]"],
     "CROP_SCALE=[0, 1]: area fractions must be in (0, 1]"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "crop_scale", "[0.5, 1.5]"],
     "must be in (0, 1]"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "crop_scale", "[0.9, 0.5]"],
     "CROP_SCALE=[0.9, 0.5]: min must not exceed max"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "crop_scale", "0.5"],
     "must be two numbers [min, max]"),
    (["pipeline", "--data", "sample", "-p", "flip_p", "-0.5"], "FLIP_P=-0.5 is a probability: it must be in [0, 1]"),
    (["pretrain", "--data", "sample", "-p", "rotations", "[0, 45]"], "multiples of 90 degrees"),
    (["pretrain", "--data", "sample", "--task", "rotation", "-p", "rotations", "[0, 90]"],
     "cannot be used with TASK=rotation"),
    (["pretrain", "--data", "sample", "--task", "simclr", "-p", "crop_scale", "[0.5, 1]"],
     "CROP_SCALE=[0.5, 1.0] does not apply to TASK=simclr: it cuts its own views"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "flip", "0"], "unknown parameter 'flip'"),
    # encoders that cannot take SIZE or the task's smaller views, or give no pooled feature (models.encoders)
    (["pretrain", "--data", "sample", "--task", "dino", "--arch", "beit_base_patch16_224"],
     "ARCH=beit_base_patch16_224 cannot take"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "--arch", "coat_tiny"],
     "ARCH=coat_tiny cannot be built as an encoder"),
    # limits: non-finite numbers, zeros through P, sizes, versions, devices, batches, task parameters, encoders, names
    (["pretrain", "--data", "sample", "--lr", "inf"], "LR=inf is not a finite number"),
    (["pretrain", "--data", "sample", "--task", "simclr", "-p", "temperature", ".inf"], "temperature=inf is not a finite"),
    (["pretrain", "--data", "sample", "-p", "epochs", "0"], "EPOCHS=0 given explicitly: it must be positive"),
    (["pretrain", "--data", "sample", "-p", "lr", "0.0"], "LR=0.0 given explicitly"),
    (["pretrain", "--data", "sample", "--size", "100000"], "SIZE=100000: the image cache of"),
    (["pretrain", "--data", "sample", "--size", "64", "--bs", "100000000"], "BS=100000000 at SIZE=64: one batch"),
    (["pretrain", "--data", "sample", "--version", "{file_v7}"], "runs/v7 exists and is not a run folder"),
    (["pretrain", "--data", "sample", "--device", "{lacking_device}"], "CUDA device"),
    (["pretrain", "--data", "sample", "--task", "unmix", "--bs", "3"], "unmix shows n_sources=4 distinct batch images"),
    (["pretrain", "--data", "sample", "--task", "unmix", "-p", "n_sources", "4", "--bs", "3"], "use a batch of at least 4"),
    (["pretrain", "--data", "sample", "-p", "pct_pos", "many"], "pct_pos='many' must be a number"),
    (["pretrain", "--data", "sample", "-p", "pct_pos", "1.5"], "pct_pos is the fraction of positives: in [0, 1]"),
    (["pretrain", "--data", "sample", "--task", "unmix", "-p", "n_sources", "2.5"], "n_sources=2.5 must be a whole number"),
    (["pretrain", "--data", "sample", "--task", "unmix", "-p", "head", "mlp"], "unknown unmix head='mlp'"),
    (["pretrain", "--data", "sample", "--task", "unmix", "-p", "loss", "contrastive"], "needs mode=classify"),
    (["pretrain", "--data", "sample", "-p", "grad_stats", "maybe"], "grad_stats='maybe' must be true or false"),
    (["transfer", "--version", "v6", "--from", "{tinyconv_encoder}", "--arch", "resnet18", "--data", "sample"],
     "FROM=v5: "),
    (["pretrain", "--data", "{non_utf8}"], "is not valid UTF-8"),
    (["transfer", "--version", "v1", "--resume", "1"], "RESUME=1: transfer never started in v1: nothing to resume"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "optimizer", "lamb"], "unknown optimizer='lamb'"),
    (["pretrain", "--data", "sample", "-p", "schedule", "step"], "unknown schedule='step'"),
    (["pretrain", "--data", "sample", "-p", "flat_frac", "1.5"], "flat_frac=1.5 must be a number in [0, 1)"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "weight_decay", "-1"], "weight_decay=-1.0 must be >= 0"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "label_smoothing", "1"],
     "label_smoothing=1.0 must be a number in [0, 1)"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "head_dropout", "much"],
     "head_dropout='much' must be a number"),
    (["pretrain", "--data", "sample", "-p", "pretrain_on_val", "maybe"], "pretrain_on_val='maybe' must be true or false"),
    (["pretrain", "DATA=sample", "NPROC=0"], "NPROC='0' must be a positive whole number"),
    (["pretrain", "DATA=sample", "NPROC=3", "BS=32"], "BS=32 is the global batch and must split evenly over 3"),
    (["pretrain", "DATA=sample", "NNODES=2"], "NNODES=2 needs MASTER=host:port"),
    (["pretrain", "DATA=sample", "NNODES=2", "MASTER=node0"], "MASTER='node0' must be host:port"),
    (["transfer", "VERSION=v3", "FROM=none", "DATA=sample", "NNODES=2", "NODE_RANK=2", "MASTER=h:29500"],
     "NODE_RANK=2 must be below NNODES=2"),
    (["evaluate", "NNODES=2", "NODE_RANK=1", "MASTER=h:29500"], "evaluate runs on node 0 alone"),
    (["pretrain", "NNODES=2", "NODE_RANK=1"], "NNODES=2 needs MASTER=host:port"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_gives_one_clear_line_and_changes_nothing(args, message, runs_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    args = [FOLDERS[a](tmp_path) if a in FOLDERS else a for a in args]
    before = snapshot(runs_dir)
    rc = stage.main([*args, "--runs-dir", str(runs_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0]
    assert snapshot(runs_dir) == before


def test_make_reports_bad_input_with_a_non_zero_exit(runs_dir):
    """The Makefile passes the stage's exit code on (through the same entry point). The runs folder is the test's
    own (P reaches bin/stage.py): the repo's runs/ may be in use by a researcher's run while the suite runs."""
    before = snapshot(runs_dir)
    out = subprocess.run(["make", "-s", "pretrain", "TASK=jigsaw", "DATA=sample", f"P=--runs-dir {runs_dir}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "error: unknown TASK='jigsaw'" in out.stderr
    assert snapshot(runs_dir) == before


def test_a_bad_split_and_dev_scoring_of_a_classifier_that_saw_dev_are_refused(lab_env, tmp_path):
    """SPLIT must be val or dev; evaluate on dev needs a transfer fine-tuned on the rest of train/."""
    from imgwang import runs
    from imgwang.core.errors import ConfigError
    from imgwang.stages.driver import plan_stage

    with pytest.raises(ConfigError, match="unknown SPLIT='test'"):
        plan_stage("transfer", stage.parse_args(["transfer", "VERSION=v9", "SPLIT=test", "FROM=none", "DATA=sample",
                                                 "--runs-dir", str(tmp_path)]), REPO)
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "classifier.pt").write_bytes(b"")
    runs.update_stage(tmp_path / "v1", "transfer", status="done", config={"data": "sample", "split": "val", "from_version": "none"})
    with pytest.raises(ConfigError, match="fine-tuned on all of train/, the dev images included"):
        plan_stage("evaluate", stage.parse_args(["evaluate", "VERSION=v1", "SPLIT=dev", "--runs-dir", str(tmp_path)]), REPO)
    planned = plan_stage("evaluate", stage.parse_args(["evaluate", "VERSION=v1", "--runs-dir", str(tmp_path)]), REPO)
    assert planned.parameters["split"] == "val"  # as transfer scored
