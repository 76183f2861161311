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

from .. import threads
from ..errors import ConfigError, ImgwangError
from ..train.interrupt import TrainingInterrupted
from .world import in_torchrun

GRACE_S = 90  # after Ctrl-C: time for the ranks to reach their next step and exit before they are killed


def settings(cfg: dict) -> dict:
    """NPROC, NNODES, NODE_RANK, MASTER from the config, checked (one ConfigError line, before compute)."""
    out = {}
    for key, low in (("nproc", 1), ("nnodes", 1), ("node_rank", 0)):
        value = cfg.get(key, low if key != "node_rank" else 0)
        try:
            number = int(str(value if value not in (None, "") else (1 if key != "node_rank" else 0)))
        except ValueError:
            raise ConfigError(f"{key.upper()}={value!r} must be a whole number") from None
        if number < (0 if key == "node_rank" else 1):
            raise ConfigError(f"{key.upper()}={value!r} must be {'>= 0' if key == 'node_rank' else 'at least 1'}")
        out[key] = number
    if out["node_rank"] >= out["nnodes"]:
        raise ConfigError(f"NODE_RANK={out['node_rank']} must be below NNODES={out['nnodes']} (nodes count from 0)")
    master = str(cfg.get("master") or "")
    if master:
        host, _, port = master.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"MASTER={master!r} must be host:port, e.g. 10.0.0.1:29500 (node 0's address)")
    elif out["nnodes"] > 1:
        raise ConfigError(f"NNODES={out['nnodes']} needs MASTER=host:port, the address of node 0 (NODE_RANK=0)")
    out["master"] = master
    if out["nproc"] > 1 and str(cfg.get("device", "")).startswith(("cuda", "auto")):
        import torch

        gpus = torch.cuda.device_count()
        if gpus and out["nproc"] > gpus:
            raise ConfigError(f"NPROC={out['nproc']} but this machine has {gpus} GPU(s): one process per GPU")
        if str(cfg.get("device")).startswith("cuda") and not gpus:
            raise ConfigError(f"DEVICE={cfg['device']} with NPROC={out['nproc']}, but no CUDA device is available")
    world = out["nproc"] * out["nnodes"]
    bs = cfg.get("bs")
    if world > 1 and isinstance(bs, int) and bs % world:
        raise ConfigError(f"BS={bs} is the global batch and must split evenly over {world} processes "
                          f"(NPROC={out['nproc']} x NNODES={out['nnodes']})")
    return out


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
    return cmd + ["-m", "imgwang.distributed.run", str(job_file)]


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
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
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
