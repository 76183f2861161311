"""`make pretrain` / `make transfer` with NPROC=2 on CPU (gloo) against the same stages with NPROC=1.

What is asserted: both complete; the NPROC=2 notebooks glue the same scraps as the one-process notebooks of
the shared pipeline; run.json's `world` says 2 processes, the same global batch split 16 + 16; the numbers
agree within a tolerance with the same configuration run in one process (the kernel's code, run_pretrain /
run_transfer, here). Not equality: BS is the global batch and the batches, steps and schedule are the same,
but rank 1 augments its half of every batch with its own random stream (one process draws one stream for the
whole batch), so the two runs differ as two augmentation draws do. Exactness of the step itself is
tests/test_distributed_step.py's job.
"""

import json

import nbformat
import pytest
import scrapbook as sb

from conftest import PIPELINE_VERSION, one_torch_thread, stage_here

TINY = ["DATA=sample", "ARCH=tinyconv", "SIZE=32", "EPOCHS=2", "BS=32", "COMET=off", "DEVICE=cpu", "SEED=0"]
NOTEBOOK = {"pretrain": "01-pretrain.ipynb", "transfer": "02-transfer.ipynb"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lab_env):
    """v `two`: both stages through bin/stage.py's main with NPROC=2 (kernel, torchrun, 2 ranks); v `one`: the
    same configurations (read back from `two`'s notebooks) with NPROC=1, in this process."""
    from imgwang import runs as run_records
    from imgwang.stages.pretrain import pretrain_scraps, run_pretrain
    from imgwang.stages.transfer import run_transfer, transfer_scraps

    runs_dir = tmp_path_factory.mktemp("runs")
    for stage in ("pretrain", "transfer"):
        assert stage_here(runs_dir, stage, "VERSION=two", "NPROC=2", "TASK=rotation", *TINY) == 0, stage
        book = nbformat.read(runs_dir / "two" / NOTEBOOK[stage], as_version=4)
        said = "".join(o.get("text", "") for c in book.cells for o in c.get("outputs", []))
        assert f"{stage}: torchrun, 2 process(es)" in said
    one = {}
    (runs_dir / "one").mkdir()
    cfg = {**scraps(runs_dir, "two", NOTEBOOK["pretrain"])["config"], "nproc": 1, "version": "one"}
    with one_torch_thread():
        one["pretrain"] = pretrain_scraps(cfg, run_pretrain(cfg, runs_dir / "one"))
        run_records.update_stage(runs_dir / "one", "pretrain", status="done", config=cfg)
        cfg = {**scraps(runs_dir, "two", NOTEBOOK["transfer"])["config"], "nproc": 1, "version": "one", "from_version": "one"}
        one["transfer"] = transfer_scraps(cfg, run_transfer(cfg, runs_dir / "one", runs_dir))
    return runs_dir, one


def scraps(runs_dir, version, notebook):
    return sb.read_notebook(str(runs_dir / version / notebook)).scraps.data_dict


def world(runs_dir, version, stage):
    return json.loads((runs_dir / version / "run.json").read_text())["stages"][stage]["world"]


@pytest.mark.parametrize("stage", ["pretrain", "transfer"])
def test_two_processes_glue_what_one_process_glues(runs, pipeline, stage):
    runs_dir, ones = runs
    notebook = NOTEBOOK[stage]
    one, two = ones[stage], scraps(runs_dir, "two", notebook)
    assert set(scraps(pipeline, PIPELINE_VERSION, notebook)) == set(two)  # the figures too: the one-process notebook's scraps
    assert set(one) <= set(two)
    assert (world(runs_dir, "one", stage)["world_size"], world(runs_dir, "two", stage)["world_size"]) == (1, 2)
    w = world(runs_dir, "two", stage)
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
