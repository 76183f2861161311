"""`make pretrain` / `make transfer` with NPROC=2 on CPU (gloo) against the same stages with NPROC=1.

What is asserted: both complete; the notebooks glue the same scraps; run.json's `world` says 2 processes,
the same global batch split 16 + 16; the numbers agree within a tolerance. Not equality: BS is the global
batch and the batches, steps and schedule are the same, but rank 1 augments its half of every batch with its
own random stream (one process draws one stream for the whole batch), so the two runs differ as two
augmentation draws do. Exactness of the step itself is tests/test_distributed_step.py's job.
"""

import json

import pytest
import scrapbook as sb

from conftest import run_stage

TINY = ["DATA=sample", "ARCH=tinyconv", "SIZE=32", "EPOCHS=2", "BS=32", "COMET=off", "DEVICE=cpu", "SEED=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lab_env):
    runs_dir = tmp_path_factory.mktemp("runs")
    for version, nproc in (("one", "1"), ("two", "2")):
        for stage in ("pretrain", "transfer"):
            out = run_stage(runs_dir, stage, f"VERSION={version}", f"NPROC={nproc}", "TASK=rotation", *TINY)
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
            if nproc == "2":
                assert f"{stage}: torchrun, 2 process(es)" in out.stdout + out.stderr
    return runs_dir


def scraps(runs_dir, version, notebook):
    return sb.read_notebook(str(runs_dir / version / notebook)).scraps.data_dict


def world(runs_dir, version, stage):
    return json.loads((runs_dir / version / "run.json").read_text())["stages"][stage]["world"]


@pytest.mark.parametrize("stage,notebook", [("pretrain", "01-pretrain.ipynb"), ("transfer", "02-transfer.ipynb")])
def test_two_processes_glue_what_one_process_glues(runs, stage, notebook):
    one, two = scraps(runs, "one", notebook), scraps(runs, "two", notebook)
    assert set(one) == set(two)
    assert (world(runs, "one", stage)["world_size"], world(runs, "two", stage)["world_size"]) == (1, 2)
    w = world(runs, "two", stage)
    assert (w["backend"], w["global_batch"], w["per_process_batch"], w["nodes"]) == ("gloo", 32, 16, 1)
    if stage == "pretrain":
        assert [h["epoch"] for h in two["pretrain_history"]] == [1, 2]
        assert two["pretext_chance"] == one["pretext_chance"]
        assert abs(two["pretext_val_metric"] - one["pretext_val_metric"]) < 0.1
        assert abs(two["pretrain_knn_init"] - one["pretrain_knn_init"]) < 1e-6  # same initial weights
        first = [h["train_loss"] for h in (one["pretrain_history"][0], two["pretrain_history"][0])]
        assert abs(first[0] - first[1]) < 0.1 * first[0]
    else:
        assert len(two["val_accs"]) == 1
        assert abs(two["val_acc"] - one["val_acc"]) < 0.1
