"""torchrun launches from a kernel-like process: Ctrl-C in the kernel alone stops every rank; two nodes (a
transfer: its launch, two ranks fine-tuning and the kernel rebuilding their result, over two machines).

The driver below is what a stage notebook's kernel does (run_pretrain with NPROC / NNODES set), run as
its own process so the test can interrupt it as Jupyter would (SIGINT to the kernel only). Ctrl-C in the
terminal of `make pretrain NPROC=2` (SIGINT to bin/stage.py, which passes it to everything below it), and
RESUME=1 after it, are tests/test_distributed_stage.py's.
"""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from conftest import BASELINE_VERSION, REPO, free_port, held_env, ranks_alive, saved_text, scraps, stage_here, wait_until

DRIVER = """
import json, signal, sys
from pathlib import Path

# What ipykernel does around each cell: Ctrl-C raises KeyboardInterrupt even when this process was started
# with SIGINT ignored (as a shell without job control starts a background job, e.g. `make test &`: Python
# then keeps it ignored, and the interrupt below was lost in such full-suite runs).
signal.signal(signal.SIGINT, signal.default_int_handler)
from imgwang.stages.resolve import resolve
from imgwang.stages.pretrain import run_pretrain
from imgwang.core.interrupt import TrainingInterrupted

params, out = json.loads(sys.argv[1]), Path(sys.argv[2])
cfg = resolve("pretrain", params)
run_dir = Path(cfg["runs_dir"]) / cfg["version"]
run_dir.mkdir(parents=True, exist_ok=True)
try:
    r = run_pretrain(cfg, run_dir)
except TrainingInterrupted as e:
    out.write_text(json.dumps({"interrupted": e.epoch_completed}))
    sys.exit(130)
out.write_text(json.dumps({"history": r.get("history"), "val_metric": r.get("val_metric")}))
"""


def params(tmp_path, **more):
    base = {"version": "v1", "runs_dir": str(tmp_path / "runs"), "data": "sample", "arch": "tinyconv", "size": 32,
            "task": "rotation", "task_params": {}, "epochs": 2, "bs": 32, "lr": 2e-3, "seed": 0, "device": "cpu",
            "comet": "off", "resume": False, "grad_stats": False, "knn_every": 0, "nproc": 2}
    return {**base, **more}


def start(tmp_path, name, p, hold=False, ignore_sigint=False):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    return subprocess.Popen([sys.executable, str(script), json.dumps(p), str(tmp_path / f"{name}.json")],
                            env=held_env(env, hold), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=ignore)


def test_ctrl_c_in_the_kernel_alone_stops_every_rank_and_keeps_the_last_epoch(lab_env, tmp_path):
    """Jupyter's interrupt reaches the kernel only: its launch must pass it on to torchrun and every rank.
    (The resume after it, in-process as a kernel runs it, is the one test_distributed_stage.py checks after
    its Ctrl-C: "resumed from", "after epoch 1 of 2", epochs [1, 2], world_size 2.)"""
    epochs = 2
    p = params(tmp_path, epochs=epochs, task="held_rotation")  # epoch 2 waits for the signal: it cannot end first
    # started with SIGINT ignored, as a background job's children are: the driver must still take Ctrl-C
    driver = start(tmp_path, "first", p, hold=True, ignore_sigint=True)
    lines = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in driver.stdout], daemon=True)
    reader.start()
    last = tmp_path / "runs" / "v1" / "checkpoints" / "pretrain" / "last.pt"  # epoch 1 saved: epoch 2 holds
    assert wait_until(lambda: last.exists() or driver.poll() is not None, 1200, every=0.2), "".join(lines)
    driver.send_signal(signal.SIGINT)  # press Ctrl-C in the "kernel" (once)
    driver.wait(timeout=900)
    reader.join(timeout=30)
    out = "".join(lines)
    assert driver.returncode == 130, out
    assert "interrupt: stopping every rank" in out
    stopped = json.loads((tmp_path / "first.json").read_text())["interrupted"]
    assert stopped == 1
    assert wait_until(lambda: not ranks_alive(tmp_path), 30, every=0.5), "a rank outlived the interrupt"
    assert torch.load(last, weights_only=True)["epoch"] == stopped < epochs


def test_two_nodes_on_loopback_fine_tune_as_one_process_does(lab_env, tmp_path, request, monkeypatch, capfd):
    """`make transfer NNODES=2 NODE_RANK=0|1 MASTER=...` on two "machines" (two launches on this one: node 1 a
    process of its own, node 0 bin/stage.py's main in this one), from random init, against the shared
    pipeline's baseline: the same configuration fine-tuned by one process."""
    master = f"127.0.0.1:{free_port()}"
    runs_dir = tmp_path / "runs"
    common = ["NNODES=2", f"MASTER={master}", "NPROC=1", "DEVICE=cpu"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    node1 = subprocess.Popen([sys.executable, str(REPO / "bin" / "stage.py"), "transfer", "NODE_RANK=1", *common,
                              "--runs-dir", str(tmp_path / "node1-runs")], cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        code0 = stage_here(runs_dir, "transfer", "VERSION=v1", "NODE_RANK=0", *common, "FROM=none", "DATA=sample",
                           "ARCH=tinyconv", "SIZE=32", "EPOCHS=1", "COMET=off", "SEED=0")
        out1 = node1.communicate(timeout=600)[0]
    finally:
        node1.kill()
    out0 = "".join(capfd.readouterr())
    assert code0 == 0, out0[-3000:]
    assert node1.returncode == 0, out1[-3000:]
    assert "node 1 took part in transfer" in out1
    assert not (tmp_path / "node1-runs").exists()  # the other machine writes nothing
    run = json.loads((runs_dir / "v1" / "run.json").read_text())["stages"]["transfer"]
    assert run["status"] == "done"
    w = run["world"]
    assert (w["world_size"], w["nodes"], w["backend"], w["global_batch"], w["per_process_batch"]) == (2, 2, "gloo", 32, 16)

    two = scraps(runs_dir / "v1" / "02-transfer.ipynb")
    said = saved_text(runs_dir / "v1" / "02-transfer.ipynb")
    assert "transfer: torchrun, 1 process(es) on node 0 of 2" in said and "rendezvous at " + master in said
    # asked for only now, so this worker fine-tunes meanwhile instead of waiting for the other to make it
    one = scraps(request.getfixturevalue("pipeline") / BASELINE_VERSION / "02-transfer.ipynb")
    assert set(two) == set(one)  # the figures too
    same = ("arch", "size", "epochs", "bs", "from_version", "seed", "lr")
    assert {k: two["config"][k] for k in same} == {k: one["config"][k] for k in same}
    assert len(two["val_accs"]) == 1 and abs(two["val_acc"] - one["val_acc"]) < 0.1
    assert len(two["transfer_history"]) == len(one["transfer_history"]) == 1


def test_bad_launch_settings_fail_before_compute():
    from imgwang.core.errors import ConfigError
    from imgwang.stages.resolve import launch_settings, resolve

    for bad, words in (({"nproc": 0}, "NPROC"), ({"nnodes": 2}, "MASTER"), ({"nproc": 3, "bs": 32}, "split evenly"),
                       ({"nnodes": 2, "node_rank": 2, "master": "h:1"}, "NODE_RANK"),
                       ({"nnodes": 2, "master": "nohost"}, "host:port"), ({"nproc": "two"}, "NPROC='two'")):
        with pytest.raises(ConfigError, match=words):
            if "bs" in bad:  # the batch is the stage's: planning checks it with the stage's configuration
                resolve("pretrain", {"data": "sample", "arch": "tinyconv", "device": "cpu", **bad})
            else:
                launch_settings(bad)

