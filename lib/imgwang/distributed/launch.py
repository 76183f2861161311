"""The kernel side of a launch: run torchrun on the stage's entry point, stream its lines, read rank 0's result.

    result = launch("pretrain", cfg, run_dir, runs_dir)   # cfg: the resolved stage config

cfg's `nproc` (processes on this machine), `nnodes`, `node_rank` and `master` ("host:port" of node 0)
decide the command. One node without MASTER uses torchrun's --standalone rendezvous (a free local port);
otherwise the static rendezvous at MASTER, where global ranks follow NODE_RANK, so rank 0, which writes
the checkpoints and the result, is always on node 0.

torchrun runs in its own session, so the kernel's interrupt does not reach the ranks twice; Ctrl-C in
the kernel sends one SIGINT to torchrun, which passes it to every local rank, and the ranks stop together
at their next step (distributed/stop.py). A second Ctrl-C kills them at once. Either way last.pt holds the
last complete epoch and RESUME=1 continues from it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..core import threads
from ..core.errors import ImgwangError
from ..core.interrupt import TrainingInterrupted
from ..core.plain import from_plain
from .world import in_torchrun

GRACE_S = 90  # after Ctrl-C: time for the ranks to reach their next step and exit before they are killed


def settings(cfg: dict) -> dict:
    """NPROC, NNODES, NODE_RANK, MASTER of a resolved config (checked there: imgwang.stages.resolve.launch_rule)."""
    return {"nproc": cfg.get("nproc", 1), "nnodes": cfg.get("nnodes", 1), "node_rank": cfg.get("node_rank", 0),
            "master": str(cfg.get("master") or "")}


def wanted(cfg: dict) -> bool:
    """Launch torchrun (more than one process) rather than train in this process."""
    s = settings(cfg)
    return (s["nproc"] > 1 or s["nnodes"] > 1) and not in_torchrun()


def torchrun_command(cfg: dict, job_file: Path) -> list[str]:
    s = settings(cfg)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={s['nproc']}", "--max-restarts=0"]
    if s["master"]:
        host, _, port = s["master"].rpartition(":")
        cmd += [f"--nnodes={s['nnodes']}", f"--node-rank={s['node_rank']}", f"--master-addr={host}", f"--master-port={port}"]
    else:
        cmd += ["--standalone", "--nnodes=1"]
    return cmd + ["-m", "imgwang.distributed.worker", str(job_file)]


def worker_env(nproc: int) -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    lib = str(Path(__file__).resolve().parents[2])  # the lib this kernel imported, first on the workers' path
    env["PYTHONPATH"] = os.pathsep.join([lib, *filter(None, [env.get("PYTHONPATH")])])
    return env


def launch(stage: str, cfg: dict, run_dir: Path, runs_dir: Path, *, out=None) -> dict:
    """Run the stage on every rank; return rank 0's result (node 0) or {} (other nodes: they only compute).

    Raises TrainingInterrupted when the ranks were stopped, ImgwangError with one line when they failed."""
    s = settings(cfg)
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="imgwang-launch-") as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps({"stage": stage, "cfg": cfg, "run_dir": str(run_dir), "runs_dir": str(runs_dir),
                                        "result": str(result_file)}))
        cmd = torchrun_command(cfg, job_file)
        print(f"{stage}: torchrun, {s['nproc']} process(es) on node {s['node_rank']} of {s['nnodes']}"
              + (f", rendezvous at {s['master']}" if s["master"] else ""), file=out, flush=True)
        with threads.step_aside():  # the ranks take the cores' shares (each registers), the kernel only waits
            rc, interrupted = stream(cmd, worker_env(s["nproc"]), out)
        result = from_plain(json.loads(result_file.read_text())) if result_file.is_file() else {}
    status = result.get("status")
    if status == "interrupted" or (interrupted and status != "done"):
        raise TrainingInterrupted(result.get("epoch_completed", 0), "interrupted (all ranks stopped)")
    if status == "failed":
        raise ImgwangError(result["error"])
    if rc != 0:
        raise ImgwangError(f"{stage} failed under torchrun (exit code {rc}); the ranks' messages are above")
    if status != "done" and s["node_rank"] == 0:
        raise ImgwangError(f"{stage}: rank 0 wrote no result (exit code {rc})")
    return result


def stream(cmd: list[str], env: dict, out) -> tuple[int, bool]:
    """Run `cmd` in its own session, copying its lines to `out` as they come; Ctrl-C is passed on once."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=env, start_new_session=True)
    interrupted = False
    try:
        while True:
            try:
                for line in proc.stdout:
                    out.write(line)
                    out.flush()
                break
            except KeyboardInterrupt:
                if interrupted:  # second Ctrl-C: stop waiting for the next step
                    kill_group(proc)
                    continue
                interrupted = True
                print("interrupt: stopping every rank after its current step", file=out, flush=True)
                proc.send_signal(signal.SIGINT)
                timer = threading.Timer(GRACE_S, kill_group, args=(proc,))
                timer.daemon = True
                timer.start()
        return proc.wait(), interrupted
    finally:
        if proc.poll() is None:  # an error in this loop itself: leave no ranks behind
            kill_group(proc)
            proc.wait()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its ranks (each rank runs in a session of its own, so by process tree)."""
    import psutil

    if proc.poll() is not None:
        return
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
