"""Stages side by side and after a crash, through bin/stage.py: concurrent commands each get their own version,
a busy version is refused, a killed stage resumes with its recorded settings, FORCE leaves nothing stale done; the
stage's kernel manager shuts a finished kernel down without interrupting it (imgwang.stages.kernel)."""

import asyncio
import os
import signal
import subprocess
import time

import psutil
import pytest
import scrapbook as sb
import stage  # bin/stage.py
from jupyter_client.manager import AsyncKernelManager

from conftest import REPO, held_env, stage_cmd, stage_here, stages_of, wait_until
from imgwang.stages import driver
from imgwang.stages.kernel import StageKernelManager

TINY = ["--data", "sample", "--arch", "tinyconv", "--size", "32", "--epochs", "1", "--bs", "32", "--comet", "off",
        "-p", "knn_every", "0", "--task", "rotation"]

FLIP_TASK = '''
"""hflip: was the image mirrored left to right? A throw-away task: the whole of it is this file."""

import torch

from imgwang.tasks.base import register
from imgwang.tasks.classification import ClassificationTask


@register
class HFlip(ClassificationTask):
    name = "hflip"
    n_classes = 2

    def __init__(self, *, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)

    def make_batch(self, images, generator):
        b = images.shape[0]
        flipped = torch.randint(0, 2, (b,), generator=generator, device=generator.device).to(images.device)
        inputs = torch.where(flipped.view(b, 1, 1, 1) == 1, images.flip(3), images)
        return inputs, flipped, {"sources": torch.arange(b, device=images.device).unsqueeze(1)}
'''


def test_two_pretrains_started_together_without_version_each_get_their_own(lab_env, tmp_path):
    """As a sweep script starts them, here with a stale Comet key: a local server on 127.0.0.1 answers 401 through
    comet's URL override. Each run gets its own version, and the key reaches neither the output nor any file.
    One of the two pretrains a task kept in one file outside the lab (IMGWANG_TASKS): a new pretext task is
    one file that registers itself, and it runs through the stage and its notebook as any other."""
    from test_notebooks import files_holding
    from test_tracking import FAKE_KEY, RefusingComet

    (tmp_path / "flip_task.py").write_text(FLIP_TASK)
    server = RefusingComet()
    env = {**os.environ, "COMET_URL_OVERRIDE": server.url, "COMET_API_KEY": FAKE_KEY, "no_proxy": "*",
           "IMGWANG_TASKS": "flip_task",
           "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)}
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        env.pop(var, None)
    runs_dir = tmp_path / "runs"
    try:
        procs = [subprocess.Popen(stage_cmd(runs_dir, "pretrain", *TINY, "--comet", "online", "--task", task), cwd=REPO,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for task in ("rotation", "hflip")]
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        server.httpd.shutdown()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert sorted(p.name for p in runs_dir.iterdir()) == ["v1", "v2"]
    for v in ("v1", "v2"):
        assert stages_of(runs_dir / v)["pretrain"]["status"] == "done"
        assert (runs_dir / v / "encoder.pt").exists() and (runs_dir / v / "01-pretrain.ipynb").exists()
    said = sorted(out.strip().splitlines()[-1] for out, _ in outs)
    assert said == [f"done: pretrain in {runs_dir / v}" for v in ("v1", "v2")]
    assert any("/logger/add/run" in r for r in server.requests)  # comet did ask, and was refused
    assert all(FAKE_KEY not in out + err for out, err in outs) and files_holding(runs_dir, FAKE_KEY) == []
    glued = {v: sb.read_notebook(str(runs_dir / v / "01-pretrain.ipynb")).scraps.data_dict for v in ("v1", "v2")}
    assert sorted(s["task"] for s in glued.values()) == ["hflip", "rotation"]
    for v, scraps in glued.items():
        text = (runs_dir / v / "01-pretrain.ipynb").read_text()
        assert "refused COMET_API_KEY (HTTP 401)" in text and "Invalid apiKey" not in text
        if scraps["task"] == "hflip":
            assert scraps["pretext_chance"] == 0.5 and 0 <= scraps["pretext_val_metric"] <= 1


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_stage_refuses_company_then_resumes_with_its_recorded_settings(lab_env, tmp_path, capsys, held_here):
    """SIGKILL (as the OOM killer sends) to a running stage; docs/reliability.md's `make pretrain VERSION=v1 RESUME=1`."""
    runs_dir = tmp_path / "runs"
    # held_rotation's epoch 2 waits (for a signal that does not come): the stage is surely running when killed
    args = ["pretrain", "--version", "v1", *TINY, "--task", "held_rotation", "--epochs", "2", "--bs", "16"]
    proc = subprocess.Popen(stage_cmd(runs_dir, *args), cwd=REPO, env=held_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last = runs_dir / "v1" / "checkpoints" / "pretrain" / "last.pt"
    wait_until(lambda: last.exists() or proc.poll() is not None, 1200, every=0.2)
    kernels = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    try:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        for extra in (["--resume", "1"], ["--force", "1"], []):  # checked before anything else: planned in-process
            assert stage.main(["pretrain", "--version", "v1", *extra, "--runs-dir", str(runs_dir)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"v1 is busy: pretrain is running there (pid {proc.pid} on " in err[0], err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert stages_of(runs_dir / "v1")["pretrain"]["status"] == "running"  # what a killed process leaves
    # its kernel sees its parent gone (within a second) and exits
    assert wait_until(lambda: not any(map(alive, kernels)), 60)

    changed = ["pretrain", "--version", "v1", "--resume", "1", "--size", "48", "-p", "knn_every", "1"]
    assert stage.main([*changed, "--runs-dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "started with KNN_EVERY=0 (given 1), SIZE=32 (given 48)" in err[0], err
    assert stages_of(runs_dir / "v1")["pretrain"]["status"] == "interrupted (process gone)"

    assert stage_here(runs_dir, "pretrain", "--version", "v1", "--resume", "1") == 0  # no other variable
    record = stages_of(runs_dir / "v1")["pretrain"]
    assert record["status"] == "done" and record["resumed"] is True
    assert record["config"]["data"] == "sample" and record["config"]["size"] == 32 and record["config"]["epochs"] == 2
    history = sb.read_notebook(str(runs_dir / "v1" / "01-pretrain.ipynb")).scraps["pretrain_history"].data
    assert [h["epoch"] for h in history] == [1, 2]


def fake_finished_version(run_dir):
    """A version whose four stages are recorded done, with their files (contents do not matter here)."""
    from imgwang import runs

    for name in ("01-pretrain.ipynb", "02-transfer.ipynb", "03-evaluate.ipynb", "04-review.ipynb", "encoder.pt",
                 "classifier.pt", "predictions.pt", "predictions.csv"):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(name)
    config = {"data": "sample", "arch": "tinyconv", "size": 32, "from_version": run_dir.name}
    for s in runs.STAGES:
        runs.update_stage(run_dir, s, status="done", config={**config, **({"task": "rotation"} if s == "pretrain" else {})})


def test_force_on_pretrain_moves_later_stages_aside_and_marks_them_stale(lab_env, tmp_path, monkeypatch):
    from imgwang.stages import compare

    runs_dir = tmp_path / "runs"
    fake_finished_version(runs_dir / "v1")
    planned = []
    monkeypatch.setattr(driver, "execute", lambda plan, repo: planned.append(plan) or plan.prepare_run_dir() or 0)
    assert stage.main(["pretrain", "--version", "v1", "--force", "1", *TINY, "--runs-dir", str(runs_dir)]) == 0
    run = runs_dir / "v1"
    recorded = stages_of(run)
    assert recorded["pretrain"]["status"] == "running"  # (executing was skipped here)
    assert {s: recorded[s]["status"] for s in ("transfer", "evaluate", "review")} == dict.fromkeys(
        ("transfer", "evaluate", "review"), "stale")
    moved = list(run.glob("replaced-*"))
    assert len(moved) == 1 and sorted(p.name for p in moved[0].iterdir()) == [
        "01-pretrain.ipynb", "02-transfer.ipynb", "03-evaluate.ipynb", "04-review.ipynb", "classifier.pt",
        "encoder.pt", "predictions.csv", "predictions.pt"]
    assert "stale" in compare.run_status(run, {}) and compare.run_status(run, {}) != "complete"


def test_pipeline_resume_continues_at_the_first_unfinished_stage(lab_env, tmp_path, monkeypatch):
    from imgwang import runs

    runs_dir = tmp_path / "runs"
    run = runs_dir / "v1"
    fake_finished_version(run)
    (run / "03-evaluate.ipynb").unlink()
    (run / "04-review.ipynb").unlink()
    (run / "predictions.pt").unlink()
    runs.update_stage(run, "transfer", status="interrupted")
    transfer_config = stages_of(run)["transfer"]["config"]
    runs.update_run_json(run, lambda info: [info["stages"].pop(s) for s in ("evaluate", "review")])
    planned = []
    monkeypatch.setattr(driver, "execute", lambda plan, repo: planned.append(plan) or 0)
    assert stage.main(["pipeline", "--resume", "1", "--runs-dir", str(runs_dir)]) == 0  # the newest version
    assert [(p.stage, p.version, p.resume) for p in planned] == [
        ("transfer", "v1", True), ("evaluate", "v1", False), ("review", "v1", False)]
    assert {k: planned[0].parameters[k] for k in transfer_config} == transfer_config  # as recorded

    planned.clear()  # a signal while transfer completes: it is kept, and evaluate never starts
    monkeypatch.setattr(driver, "execute", lambda plan, repo: planned.append(plan) or driver.DONE_THEN_SIGNALLED)
    assert stage.main(["pipeline", "--resume", "1", "--runs-dir", str(runs_dir)]) == 130
    assert [p.stage for p in planned] == ["transfer"]

    planned.clear()
    for s in ("transfer", "evaluate", "review"):
        runs.update_stage(run, s, status="done")
    assert stage.main(["pipeline", "--resume", "1", "--runs-dir", str(runs_dir)]) == 2
    assert planned == []


@pytest.mark.parametrize("status", ["done", None])
def test_resume_of_a_stage_with_nothing_to_resume_is_one_line(status, lab_env, tmp_path, capsys):
    from imgwang import runs

    run = tmp_path / "runs" / "v1"
    run.mkdir(parents=True)
    if status:
        runs.update_stage(run, "pretrain", status=status, config={"data": "sample"})
    assert stage.main(["pretrain", "--version", "v1", "--resume", "1", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("already finished" in err[0] if status else "never started in v1" in err[0])


def test_a_kernel_killed_for_memory_is_interrupted_with_a_resume_hint(lab_env, tmp_path, monkeypatch, capsys):
    """The OOM killer takes the notebook's kernel: papermill raises DeadKernelError (simulated here)."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    def killed(*args, **kwargs):
        raise DeadKernelError("Kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", killed)
    runs_dir = tmp_path / "runs"
    assert stage.main(["pretrain", *TINY, "--runs-dir", str(runs_dir)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrain interrupted (kernel died)" in err[0] and "RESUME=1 VERSION=v1" in err[0]
    assert stages_of(runs_dir / "v1")["pretrain"]["status"] == "interrupted (kernel died)"
    planned = []
    monkeypatch.setattr(driver, "execute", lambda plan, repo: planned.append(plan) or 0)
    assert stage.main(["pretrain", "--version", "v1", "--resume", "1", "--runs-dir", str(runs_dir)]) == 0
    assert planned[0].resume and planned[0].parameters["size"] == 32


async def shut_down_after_a_cell(manager_class, flag):
    """Start a kernel, run a cell that records any SIGINT in `flag`, shut the kernel down; its pid."""
    km = manager_class(kernel_name="python3")
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        # ipykernel ignores SIGINT between messages (its post_handler_hook restores SIG_IGN): keep the cell's handler
        code = ("import pathlib, signal\n"
                f"signal.signal(signal.SIGINT, lambda *a: pathlib.Path({str(flag)!r}).touch())\n"
                "get_ipython().kernel.post_handler_hook = lambda: None")
        reply = await client.execute(code, reply=True, timeout=60)
        assert reply["content"]["status"] == "ok"
        pid = km.provisioner.pid
    finally:
        client.stop_channels()
        await km.shutdown_kernel()
    return pid


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("manager_class", [StageKernelManager, AsyncKernelManager])
def test_a_finished_kernel_is_shut_down_without_sigint(manager_class, tmp_path):
    flag = tmp_path / "interrupted"
    pid = asyncio.run(shut_down_after_a_cell(manager_class, flag))
    time.sleep(0.2)  # a signal sent at shutdown has been handled by now
    assert gone(pid)
    # jupyter_client's own manager interrupts first (the race that printed "KeyboardInterrupt caught in kernel");
    # the stage's does not
    assert flag.exists() == (manager_class is AsyncKernelManager)
