"""Each stage takes cores // stages running (at least 1, at most CUDA_THREADS on a GPU); THREADS overrides;
the machine-wide registry forgets stages whose process has ended; run.json records the value used."""

import json
import os
import subprocess
import sys

import pytest
import torch

from imgwang import runs
from imgwang.core import threads
from imgwang.core.errors import ConfigError


@pytest.fixture
def registry(tmp_path, monkeypatch):
    folder = tmp_path / "registry"
    monkeypatch.setenv(threads.REGISTRY_ENV, str(folder))
    before = torch.get_num_threads()
    yield folder
    if threads._stage is not None:
        threads._stage.stop()
    threads._stage, threads._budget, threads._processes = None, None, None
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, stages, expected", [(2, 1, 2), (2, 2, 1), (2, 3, 1), (16, 3, 5), (16, 1, 16),
                                                     (8, 0, 8)])
def test_the_share_is_cores_over_stages_running_never_below_one(cores, stages, expected):
    assert threads.share(cores, stages) == expected


def test_a_cuda_stage_takes_few_cpu_threads():
    assert threads.share(16, 1, "cuda") == threads.CUDA_THREADS == 2
    assert threads.share(16, 16, "cuda:0") == 1
    c = threads.choose(None, "cuda", n_cores=16, n_stages=2)
    assert (c.threads, c.processes) == (2, 8)  # the cache it waits for decodes on its plain CPU share


def test_choose_with_a_fake_count_of_running_stages():
    c = threads.choose(None, "cpu", n_cores=8, n_stages=3)
    assert (c.threads, c.source) == (2, "share")
    assert "8 cores / 3 stages running" in c.describe()


@pytest.mark.parametrize("value, expected", [("", None), (0, None), ("0", None), ("auto", None), ("3", 3), (5, 5),
                                             ("2.0", 2)])
def test_threads_override_parses(value, expected):
    assert threads.parse_threads(value) == expected


def test_the_override_wins_over_the_share():
    c = threads.choose("3", "cuda", n_cores=2, n_stages=4)
    assert (c.threads, c.source) == (3, "THREADS")
    assert "THREADS=3" in c.describe()


@pytest.mark.parametrize("bad", ["many", "-1", "1.5"])
def test_a_bad_threads_value_is_one_config_error(bad):
    with pytest.raises(ConfigError, match="THREADS"):
        threads.parse_threads(bad)


def test_registry_counts_live_stages_and_forgets_dead_ones(registry):
    threads.register("cpu", "me")
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for pid in (live.pid, dead.pid):  # records as a stage in those processes would have written them
            (registry / f"{pid}.json").write_text(json.dumps({"pid": pid, "started": None, "device": "cpu"}))
        reused = {"pid": os.getppid(), "started": 1.0, "device": "cpu"}  # a live pid, started long after this record
        (registry / f"{os.getppid()}.json").write_text(json.dumps(reused))
        (registry / "junk.json").write_text("not json")
        assert sorted(r["pid"] for r in threads.running()) == sorted([os.getpid(), live.pid])
        assert sorted(p.name for p in registry.iterdir()) == sorted([f"{os.getpid()}.json", f"{live.pid}.json"])
    finally:
        live.communicate(b"")
    assert [r["pid"] for r in threads.running()] == [os.getpid()]  # that one ended too
    threads.unregister()
    assert threads.running() == []


def test_a_stage_takes_its_share_and_follows_the_registry(registry, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    said = []
    stage = threads.start_stage(device="cpu", say=said.append)
    assert torch.get_num_threads() == threads.budget() == 2
    assert said == ["threads: 2 CPU threads (2 cores / 1 stage running)"]
    assert not stage.changed()
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (registry / f"{other.pid}.json").write_text(json.dumps({"pid": other.pid, "started": None, "device": "cpu"}))
        assert stage.changed()  # one stat tells: the fit loop looks again within the epoch
        threads.refresh_share(epoch=3, only_if_changed=True)
        assert torch.get_num_threads() == threads.budget() == 1
        assert said[-1] == "threads at epoch 3: 1 CPU threads (2 cores / 2 stages running)"
    finally:
        other.communicate(b"")
    threads.refresh_share(epoch=4)
    assert torch.get_num_threads() == 2
    assert stage.record()["changes"] == [{"epoch": 3, "threads": 1, "stages_running": 2},
                                         {"epoch": 4, "threads": 2, "stages_running": 1}]


def test_a_kernel_waiting_for_its_ranks_steps_out_of_the_registry(registry):
    threads.start_stage(device="cpu", say=lambda _: None)
    with threads.step_aside():
        assert threads.running() == []  # the ranks it launches count, not the kernel that waits for them
    assert [r["pid"] for r in threads.running()] == [os.getpid()]


def test_run_json_records_the_threads_used(registry, tmp_path):
    run_dir = tmp_path / "v1"
    runs.update_stage(run_dir, "pretrain", status="running")
    keep = lambda share: runs.update_stage(run_dir, "pretrain", threads=share)  # noqa: E731  (as the notebook does)
    threads.start_stage("1", device="cpu", keep=keep, stage="pretrain", say=lambda _: None)
    assert torch.get_num_threads() == 1
    recorded = runs.read_run_json(run_dir)["stages"]["pretrain"]
    assert recorded["status"] == "running"
    assert recorded["threads"] == {"threads": 1, "source": "THREADS", "cores": threads.cores(), "stages_running": 1,
                                   "device": "cpu"}


def test_without_a_stage_the_pools_keep_every_core_and_the_hook_does_nothing(registry):
    torch.set_num_threads(1)
    threads.refresh_share(epoch=1)
    assert torch.get_num_threads() == 1 and threads.budget() == threads.cores()
    assert not registry.exists()


def test_bench_share_runs_two_stages_that_split_the_cores(tmp_path):
    """bin/bench_share.py (make bench): each of the two timed processes finds the other in the registry."""
    from conftest import REPO

    args = ["--arch", "tinyconv", "--size", "32", "--batch-size", "8", "--seconds", "1", "--repeats", "1",
            "--registry", str(tmp_path / "registry")]
    out = subprocess.run([sys.executable, str(REPO / "bin" / "bench_share.py"), *args], capture_output=True,
                         text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    half = max(1, threads.cores() // 2)
    assert any(f"({threads.cores()} threads); together" in line and f"({half}, {half} threads)" in line
               for line in lines), out.stdout  # alone: every core; together: half each, all through the window
    name, value = lines[-1].split(": ")
    assert name == "concurrent_share" and float(value) > 0
    assert not list((tmp_path / "registry").glob("*.json"))  # both left the registry at exit
