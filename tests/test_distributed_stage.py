"""`make pretrain NPROC=2` on CPU (gloo) against the same stage with NPROC=1, and Ctrl-C in its terminal.

The NPROC=2 pretrain is interrupted once, after epoch 1 (SIGINT to bin/stage.py, which passes it to the kernel and
everything below it, as Ctrl-C in its terminal does), then continued with RESUME=1: nothing is lost, no rank
outlives the interrupt, and the resumed run completes the epochs. That completed run is the NPROC=2 pretrain the
rest of this file compares (one run serves both: each NPROC=2 stage starts a kernel, torchrun and two ranks).
Transfer's own launch (two ranks fine-tuning, rebuilt in the kernel) is tests/test_distributed_launch.py's
two-node test: a world of 2 processes over two launches.

What is asserted of NPROC=2 against NPROC=1: both complete; the NPROC=2 notebook glues the data scraps a one-process
run of the same configuration gives (the notebook's data scraps are pretrain_scraps of its run) and the figures;
run.json's `world` says 2 processes, the same global batch split 16 + 16; the numbers agree within a tolerance with
that one-process run (the kernel's code, run_pretrain, here). Not equality: BS is the global batch and the batches,
steps and schedule are the same, but rank 1 augments its half of every batch with its own random stream (one process
draws one stream for the whole batch), so the two runs differ as two augmentation draws do. Exactness of the step
itself is tests/test_distributed_step.py's job.
"""

import json
import signal

import pytest
import scrapbook as sb
import torch

from conftest import (
    held_task_here,
    one_torch_thread,
    ranks_alive,
    saved_text,
    signal_held_stage,
    stage_here,
    wait_until,
)

TINY = ["DATA=sample", "ARCH=tinyconv", "SIZE=32", "EPOCHS=2", "BS=32", "COMET=off", "DEVICE=cpu", "SEED=0"]
NOTEBOOK = "01-pretrain.ipynb"
# held_rotation (tests/held_task.py): rotation whose epoch 2 waits for the signal, so the run cannot end first
PRETRAIN = ["pretrain", "VERSION=two", "NPROC=2", "TASK=held_rotation", *TINY]


def interrupt_pretrain(runs_dir, ranks_tmp) -> dict:
    """The NPROC=2 pretrain through bin/stage.py, Ctrl-C (SIGINT to bin/stage.py) once epoch 1 is saved: what
    the interrupt left, for test_ctrl_c_in_the_terminal_keeps_the_last_epoch_and_resume_finishes."""
    code, out, err = signal_held_stage(runs_dir, PRETRAIN, "two", signal.SIGINT, ranks_tmp)  # ranks' job files: below
    last = runs_dir / "two" / "checkpoints" / "pretrain" / "last.pt"
    return {"code": code, "said": out + err, "err": err,
            "status": json.loads((runs_dir / "two" / "run.json").read_text())["stages"]["pretrain"]["status"],
            "partial_notebook": (runs_dir / "two" / NOTEBOOK).exists(),
            "ranks_gone": wait_until(lambda: not ranks_alive(ranks_tmp), 30, every=0.5),
            "last_epoch": torch.load(last, weights_only=True)["epoch"] if last.exists() else None}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lab_env):
    """v `two`: the pretrain through bin/stage.py's main with NPROC=2 (kernel, torchrun, 2 ranks), interrupted
    once and resumed; v `one`: the same configuration (read back from `two`'s notebook) with NPROC=1, in this
    process."""
    from imgwang import runs as run_records
    from imgwang.stages.pretrain import pretrain_scraps, run_pretrain

    runs_dir = tmp_path_factory.mktemp("runs")
    interrupted = interrupt_pretrain(runs_dir, tmp_path_factory.mktemp("ranks"))
    with held_task_here():  # the resume and what follows run held_rotation in this process, never holding
        assert stage_here(runs_dir, *PRETRAIN, "RESUME=1") == 0, "resume"
        assert "pretrain: torchrun, 2 process(es)" in saved_text(runs_dir / "two" / NOTEBOOK)
        (runs_dir / "one").mkdir()
        cfg = {**scraps(runs_dir, "two", NOTEBOOK)["config"], "nproc": 1, "version": "one", "resume": False}
        with one_torch_thread():
            one = pretrain_scraps(cfg, run_pretrain(cfg, runs_dir / "one"))
            run_records.update_stage(runs_dir / "one", "pretrain", status="done", config=cfg)
    return runs_dir, one, interrupted


def scraps(runs_dir, version, notebook):
    return sb.read_notebook(str(runs_dir / version / notebook)).scraps.data_dict


def world(runs_dir, version):
    return json.loads((runs_dir / version / "run.json").read_text())["stages"]["pretrain"]["world"]


def test_two_processes_glue_what_one_process_glues(runs):
    runs_dir, one, _ = runs
    glued = sb.read_notebook(str(runs_dir / "two" / NOTEBOOK)).scraps
    two = glued.data_dict
    assert set(two) == set(one)  # rank 0's results reach the notebook whole: the one-process run's scraps, no fewer
    assert {"task_examples", "pretrain_curves", "pretrain_knn"} <= set(glued)  # and the figures drawn from them
    assert (world(runs_dir, "one")["world_size"], world(runs_dir, "two")["world_size"]) == (1, 2)
    w = world(runs_dir, "two")
    assert (w["backend"], w["global_batch"], w["per_process_batch"], w["nodes"]) == ("gloo", 32, 16, 1)
    assert [h["epoch"] for h in two["pretrain_history"]] == [1, 2]
    assert two["pretext_chance"] == one["pretext_chance"]
    assert abs(two["pretext_val_metric"] - one["pretext_val_metric"]) < 0.1
    assert abs(two["pretrain_knn_init"] - one["pretrain_knn_init"]) < 1e-6  # same initial weights
    first = [h["train_loss"] for h in (one["pretrain_history"][0], two["pretrain_history"][0])]
    assert abs(first[0] - first[1]) < 0.1 * first[0]


def test_ctrl_c_in_the_terminal_keeps_the_last_epoch_and_resume_finishes(runs):
    """What Ctrl-C in the terminal of `make pretrain NPROC=2` does to a long run: nothing is lost, no rank
    outlives it, and RESUME=1 completes the epochs."""
    runs_dir, _, interrupted = runs
    assert interrupted["code"] == 130, interrupted["said"][-3000:]
    assert "interrupted" in interrupted["err"] and "continue with RESUME=1 VERSION=two" in interrupted["err"]
    assert interrupted["status"] == "interrupted"
    assert interrupted["partial_notebook"]  # the partial notebook is kept
    assert interrupted["ranks_gone"], "a rank outlived the interrupt"
    assert interrupted["last_epoch"] == 1
    (partial,) = runs_dir.glob("two/replaced-*/01-pretrain.ipynb")  # the interrupted notebook, kept aside
    assert "interrupt: stopping every rank" in saved_text(partial)  # the kernel's launch passed Ctrl-C on

    record = json.loads((runs_dir / "two" / "run.json").read_text())["stages"]["pretrain"]
    assert record["status"] == "done" and record["resumed"] is True and record["world"]["world_size"] == 2
    said = saved_text(runs_dir / "two" / NOTEBOOK)
    assert "resumed from" in said and "after epoch 1 of 2" in said
    assert [h["epoch"] for h in scraps(runs_dir, "two", NOTEBOOK)["pretrain_history"]] == [1, 2]
