"""bin/pretrain_sweep.py: its run lines read as bin/stage.py reads words, and a run is scored on the tuning draw
and on val/ beside the same seed's random-init encoder."""

import csv

import pretrain_sweep
import pytest


def test_run_lines_route_stage_options_and_task_parameters_with_typed_values():
    runs = pretrain_sweep.parse_runs("# a comment\n\nb1 byol 2 --lr 1e-3 --bs 32 -p weight_decay 0.5 -p momentum 0.99\n")
    assert len(runs) == 1
    run = runs[0]
    assert (run["name"], run["task"], run["seed"]) == ("b1", "byol", 2)
    assert run["given"] == {"lr": 1e-3, "bs": 32}
    assert run["params"] == {"weight_decay": 0.5, "momentum": 0.99}  # numbers, as -p values reach the stage
    assert run["setting"] == "--lr 1e-3 --bs 32 -p weight_decay 0.5 -p momentum 0.99"
    with pytest.raises(pretrain_sweep.BadLine, match="unknown word"):
        pretrain_sweep.parse_runs("x byol 0 --warp 9\n")
    with pytest.raises(pretrain_sweep.BadLine, match="a name, a task and a seed"):
        pretrain_sweep.parse_runs("x byol\n")


@pytest.mark.parametrize("lines, says", [("a byol 0 -p momentum 2.0\n", "momentum"),
                                          ("a byol 0\na simclr 1\n", "same name"),
                                          ("a nosuchtask 0\n", "nosuchtask")])
def test_a_bad_run_file_stops_with_one_error_line_before_any_compute(lab_env, tmp_path, capsys, lines, says):
    (tmp_path / "runs.txt").write_text(lines)
    code = pretrain_sweep.main(["--runs", str(tmp_path / "runs.txt"), "--out", str(tmp_path / "out.csv"),
                                "--runs-dir", str(tmp_path / "sweep"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and says in err[0]
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "out.csv").exists()


def test_a_run_is_scored_on_the_tuning_draw_and_val_beside_its_random_init(lab_env, tmp_path):
    (tmp_path / "runs.txt").write_text("r byol 1 --epochs 1 --bs 256 -p weight_decay 0.5 -p momentum 0.9\n")
    out = tmp_path / "out.csv"
    assert pretrain_sweep.main(["--runs", str(tmp_path / "runs.txt"), "--out", str(out), "--jobs", "1",
                                "--runs-dir", str(tmp_path / "sweep"), "--device", "cpu", "--tune-per-class", "3"]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert (row["name"], row["task"], row["seed"]) == ("r", "byol", "1")
    for key in ("knn_tune", "knn_val", "random_tune", "random_val"):
        assert 0.0 <= float(row[key]) <= 1.0
    assert float(row["random_val"]) != float(row["knn_val"]) or float(row["random_tune"]) != float(row["knn_tune"])
    log = (tmp_path / "sweep" / "r" / "log.txt").read_text()
    assert "'weight_decay': 0.5" in log and "'task_params': {'momentum': 0.9}" in log  # the stage got the setting
    assert (tmp_path / "sweep" / "r" / "encoder.pt").is_file()
