"""Bad input through the real entry point: one clear line, exit code 2, before any compute, runs/ unchanged."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bin"))
import stage  # noqa: E402  (bin/stage.py: what `make pretrain|transfer|...` runs)


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


def plain_images(tmp_path):
    folder = tmp_path / "street-photos"
    (folder / "day2").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "day2/c.jpg"):
        (folder / name).write_bytes(b"x")
    return str(folder)


FOLDERS = {"{not_in_layout}": not_in_layout, "{plain_images}": plain_images}

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
    (["pretrain", "--data", "sample", "--comet", "online"], "COMET=online needs COMET_API_KEY"),
    (["pretrain", "--data", "sample", "--comet", "loud"], "unknown COMET='loud'"),
    (["pretrain", "--data", "sample", "--device", "tpu"], "unknown DEVICE='tpu'"),
    (["pretrain", "THREADS=many", "DATA=sample"], "THREADS='many' must be a whole number"),
    (["pretrain", "THREADS=-2", "DATA=sample"], "THREADS='-2' must not be negative"),
    (["transfer", "--version", "v3", "--from", "v9", "--data", "sample"], "FROM=v9: no such run"),
    (["transfer", "--version", "v3", "--from", "v2", "--data", "sample"], "FROM=v2: "),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "warmup", "3"], "unknown parameter 'warmup'"),
    (["evaluate", "--version", "v2", "--data", "sample"], "classifier.pt does not exist"),
    (["review", "--version", "v4", "--data", "sample"], "predictions.pt does not exist: run `make evaluate VERSION=v4`"),
    (["pretrain", "--version", "v1", "--resume", "1", "--data", "sample"], "already finished"),
    (["pretrain", "--version", "../v1", "--data", "sample"], "not a valid folder name"),
    (["nonsense"], "unknown stage"),
    (["pretrain", "EPOCH=3", "DATA=sample"], "unknown variable EPOCH"),
    (["transfer", "VERSION=v3", "FROM=v1", "ARCH=resnet18", "DATA=sample"], "ARCH=resnet18 but the pretrain stage of v1"),
    (["pipeline", "--data", "{plain_images}"], "without classes: it can be pretrained on, not used by transfer"),
    (["transfer", "--version", "v3", "--from", "v1", "--data", "{plain_images}"], "not used by transfer"),
    (["pipeline", "--from", "none", "--data", "sample", "-p", "pct_pos", "0.7"], "unknown parameter 'pct_pos'"),
    (["pipeline", "--data", "sample", "-p", "knn_kk", "5"], "unknown parameter 'knn_kk'"),
    (["pipeline", "--data", "sample", "-p", "knn_k", "5", "-p", "probe_epochs", "0"], "PROBE_EPOCHS=0 must be a positive"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "optimizer", "lamb"], "unknown optimizer='lamb'"),
    (["pretrain", "--data", "sample", "-p", "schedule", "step"], "unknown schedule='step'"),
    (["pretrain", "--data", "sample", "-p", "flat_frac", "1.5"], "flat_frac=1.5 must be a number in [0, 1)"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "weight_decay", "-1"], "weight_decay=-1 must be >= 0"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "label_smoothing", "1"], "label_smoothing=1 must be"),
    (["transfer", "--version", "v3", "--from", "none", "--data", "sample", "-p", "head_dropout", "much"], "head_dropout='much' is not"),
    (["pretrain", "--data", "sample", "-p", "pretrain_on_val", "maybe"], "pretrain_on_val='maybe' must be true or false"),
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


def test_make_reports_bad_input_with_a_non_zero_exit(tmp_path, lab_env):
    """The Makefile passes the stage's exit code on (through the same entry point)."""
    repo_runs = REPO / "runs"
    before = snapshot(repo_runs)
    out = subprocess.run(["make", "-s", "pretrain", "TASK=jigsaw", "DATA=sample"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    assert "error: unknown TASK='jigsaw'" in out.stderr
    assert snapshot(repo_runs) == before
