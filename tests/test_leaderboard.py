"""`make leaderboard`: the recipe's two stages are planned and checked before any compute; the dry run prints
the resolved commands and parameters and leaves runs/ untouched."""

import re

import leaderboard  # bin/leaderboard.py

from imgwang.stages import recipe


def dry_run(tmp_path, capsys, *extra):
    runs_dir = tmp_path / "runs"
    rc = leaderboard.main(["--data", "sample", "--size", "32", "--dry-run", "--runs-dir", str(runs_dir), *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err, runs_dir


def test_the_dry_run_prints_both_stages_resolved_and_runs_nothing(lab_env, tmp_path, capsys):
    rc, out, err, runs_dir = dry_run(tmp_path, capsys)
    assert rc == 0, err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # nothing written
    pre, ft = out.split("\ntransfer -> ")
    assert "pretrain -> runs/v1/01-pretrain.ipynb" in pre and ft.startswith("runs/v1/02-transfer.ipynb")
    for text, stage in ((pre, recipe.PRETRAIN), (ft, recipe.FINETUNE)):
        for key in ("epochs", "bs", "lr"):
            assert re.search(rf"\b{key}={stage[key]}\b", text), (key, text)
        for key, value in stage["params"].items():
            assert f"{key}={value}" in text, key
        assert "arch=resnet34d" in text and "size=32" in text and "data=sample" in text
    assert "task=swav" in pre and "n_small_crops=6" in pre and "pretrain_on_val=True" in pre
    assert "from_version=v1" in ft and "runs=5" in ft and "optimizer=ranger" in ft
    assert "python bin/stage.py pretrain --version v1" in pre and "python bin/stage.py transfer --version v1" in ft
    assert "an estimate, not a measurement" in out and "dry run: nothing was run" in out
    lacking = leaderboard.lacking_task_params()  # a task version without some recipe values: said, not hidden
    assert ("note: this swav has no" in out) == bool(lacking) and not any(f"{n}=" in pre for n in lacking)


def test_a_try_out_shortens_it_and_bad_values_stop_before_compute(lab_env, tmp_path, capsys):
    rc, out, err, _ = dry_run(tmp_path, capsys, "--pretrain-epochs", "2", "--ft-epochs", "1", "--runs", "2",
                              "--version", "lb")
    assert rc == 0, err
    assert "runs/lb/01-pretrain" in out and re.search(r"\bepochs=2\b", out) and "runs=2" in out
    for bad, name in ((["--size", "big"], "SIZE"), (["--runs", "x"], "RUNS"), (["--device", "tpu"], "tpu")):
        rc, out, err, runs_dir = dry_run(tmp_path, capsys, *bad)
        assert rc == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1 and name in err
        assert not runs_dir.exists()


def test_the_dry_run_downloads_nothing_and_says_the_run_will(lab_env, tmp_path, capsys, monkeypatch):
    """Imagewang not fetched yet: the dry run prints the plan without the download (the 191 MB to 2.9 GB a run
    fetches first), says so, and leaves the data folder as it was."""
    from imgwang.data import resolve

    def no_download(*args, **kw):
        raise AssertionError("a dry run must not download")

    monkeypatch.setattr(resolve, "fetch_dataset", no_download)
    monkeypatch.setenv("IMGWANG_DATA", str(tmp_path / "data"))
    rc = leaderboard.main(["--size", "128", "--dry-run", "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "data=imagewang," in out and "dry run: nothing was run" in out
    assert "data: imagewang is not in the data folder yet; the run downloads it first" in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()
