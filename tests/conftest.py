"""Shared test set-up (offline, small thread count, importable lib and bin/ scripts) and the helpers
several test files use: `from conftest import gen, smooth_images, ...`."""

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COMET_MODE", "off")
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO / "bin"))  # `import stage` etc.: the scripts the Makefile runs

import matplotlib  # noqa: E402

import imgwang  # noqa: E402,F401  (first: scrapbook's import below then skips rfc3987_syntax, see imgwang/__init__)

matplotlib.use("Agg")  # tests draw off-screen (kernels keep their own backend: MPLBACKEND stays unset)

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import scrapbook as sb  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Under `make test` two pytest-xdist workers share the 2 cores: one thread each (two threads each would spin-wait
# against the other worker and run ~10x slower); a run of one file keeps both cores.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
torch.set_num_threads(1 if WORKER else 2)


def shared_once(tmp_path_factory, name: str, make) -> Path:
    """The folder `name`, filled by make(folder) once for the whole test run. Under pytest-xdist every worker
    asks for it: the first makes it under a file lock, the others wait for it and reuse it (a failure is kept
    and reported to each). Without xdist it is a plain folder of this session."""
    from imgwang.core.filelock import exclusive

    base = tmp_path_factory.getbasetemp()
    base = base.parent if WORKER else base  # xdist: .../pytest-N/popen-gwK; the run's own folder is shared
    folder, done, failed = base / name, base / f"{name}.done", base / f"{name}.failed"
    with exclusive(base / f"{name}.lock"):
        if failed.exists():
            pytest.fail(f"shared set-up {name} failed in another worker: {failed.read_text()}", pytrace=False)
        if not done.exists():
            folder.mkdir(exist_ok=True)
            try:
                make(folder)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {e}"[-4000:])
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def workers_count_as_stages(tmp_path_factory):
    """Under xdist each worker is entered in a registry of running stages kept for this run (imgwang.core.threads),
    so a stage a test starts takes its share beside the other worker (one thread on 2 cores) rather than every
    core, whose threads would spin-wait against the other worker's; and no stage outside the suite changes it."""
    if not WORKER:
        yield
        return
    from imgwang.core import threads

    folder = tmp_path_factory.getbasetemp().parent / "stage-registry"  # the run's folder, shared by the workers
    os.environ[threads.REGISTRY_ENV] = str(folder)  # inherited by the stages, kernels and ranks tests start
    entry = threads.register("cpu", f"pytest {WORKER}", folder)
    yield
    threads.unregister(entry)


@pytest.fixture(scope="session")
def lab_env(tmp_path_factory):
    """Data and cache folders for the whole run (the sample is generated once, for every xdist worker), runs
    elsewhere."""
    from imgwang.data.resolve import resolve_data

    root = shared_once(tmp_path_factory, "lab", lambda root: resolve_data("sample", root / "data"))
    env = {"IMGWANG_DATA": str(root / "data"), "IMGWANG_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def close_figures():
    """Close every figure a test drew (use with `pytestmark = pytest.mark.usefixtures("close_figures")`)."""
    yield
    plt.close("all")


def gen(seed: int = 0) -> torch.Generator:
    """A seeded CPU generator: each random draw of a test is reproducible."""
    return torch.Generator().manual_seed(seed)


def smooth_images(b: int = 16, size: int = 32, seed: int = 0, grid: int = 6, margin: float = 0.0) -> torch.Tensor:
    """(b, 3, size, size) images with structure: uniform noise on a grid x grid lattice, upsampled bilinearly,
    in [margin, 1 - margin] (a margin > 0 keeps them strictly inside (0, 1), so clipped noise never equals a pixel)."""
    low = torch.rand(b, 3, grid, grid, generator=gen(seed)) * (1 - 2 * margin) + margin
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_cmd(runs_dir, *args) -> list[str]:
    """bin/stage.py as `make <stage>` runs it, writing into runs_dir."""
    return [sys.executable, str(REPO / "bin" / "stage.py"), *args, "--runs-dir", str(runs_dir)]


def run_stage(runs_dir, *args, timeout=600, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(stage_cmd(runs_dir, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def stage_here(runs_dir, *args) -> int:
    """bin/stage.py's main(argv) in this process: the same checks, run.json records and notebook kernels as
    `make <stage>`, without starting (and importing torch into) one more process. Read its output with
    pytest's capfd (the kernels' output reaches the file descriptors) or from the executed notebooks."""
    import stage

    return stage.main([*args, "--runs-dir", str(runs_dir)])


TINY_STAGE = ["--data", "sample", "--arch", "tinyconv", "--size", "32", "--epochs", "1", "--bs", "32", "--comet", "off"]
FAKE_KEY = "fake-comet-key-5f3a9c"


# The shared pipeline: `make sweep` of one point, which runs `bin/stage.py pipeline` twice, as `make pipeline` runs
# it: the point (patchwork with pct_pos 0.6, four notebooks) and the sweep's baseline (FROM=none, three notebooks).
# probe_folds 2: each evaluate's three linear probes cross-validate on 2 folds, not 5 (~5 s instead of ~10-15 s).
SWEEP_WORDS = ["TASK=patchwork", "DATA=sample", "ARCH=tinyconv", "SIZE=32", "EPOCHS=1", "BS=32", "FT_EPOCHS=1",
               "COMET=offline", "SWEEP=pct_pos=0.6", "VERSION=sw", "-p", "probe_folds", "2"]
PIPELINE_VERSION = "sw-pct_pos0.6-seed0"  # the point's version: a whole pipeline
BASELINE_VERSION = "sw-baseline"


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, lab_env):
    """The runs folder of one tiny executed sweep, for every test that reads executed notebooks: PIPELINE_VERSION
    (four notebooks) and BASELINE_VERSION (three), run as `make sweep` runs them (bin/sweep.py), with offline
    tracking and an API key in the environment; its output kept in sweep.out. Tests that change a version work on
    a copy (or add versions of their own beside these). Made once per run, shared by the xdist workers."""

    def make(runs_dir):
        out = subprocess.run([sys.executable, str(REPO / "bin" / "sweep.py"), *SWEEP_WORDS, "--runs-dir", str(runs_dir)],
                             cwd=REPO, capture_output=True, text=True, env={**os.environ, "COMET_API_KEY": FAKE_KEY},
                             timeout=1800)  # 10 min was too short under load
        (runs_dir / "sweep.out").write_text(out.stdout)
        assert out.returncode == 0, out.stderr[-3000:]
        assert FAKE_KEY not in out.stdout + out.stderr
        assert "without encryption" not in out.stderr  # the kernels' sockets are encrypted (imgwang.stages.kernel)

    return shared_once(tmp_path_factory, "pipeline-runs", make)


def stages_of(run_dir) -> dict:
    """run.json's record of each stage of a version."""
    return json.loads((Path(run_dir) / "run.json").read_text())["stages"]


def scraps(notebook) -> dict:
    """The scraps an executed notebook glued, by name."""
    return sb.read_notebook(str(notebook)).scraps.data_dict


def saved_text(notebook, stream: str | None = None) -> str:
    """The text a saved notebook's cells printed: every stream, or only `stream` ("stdout" or "stderr")."""
    import nbformat

    book = nbformat.read(notebook, as_version=4)
    return "".join(o.get("text", "") for c in book.cells for o in c.get("outputs", [])
                   if stream is None or o.get("name") == stream)


def held_env(env: dict | None = None, hold: bool = True) -> dict:
    """The environment of a stage (and so of its kernel and ranks) that can run TASK=held_rotation
    (tests/held_task.py); `hold`: its epoch 2 waits for a signal (a resumed run's does not)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), *filter(None, [env.get("PYTHONPATH")])])
    env["IMGWANG_TASKS"] = "held_task"
    env.pop("IMGWANG_TEST_HOLD", None)
    if hold:
        env["IMGWANG_TEST_HOLD"] = "1"
    return env


def signal_held_stage(runs_dir, args, version: str, sig, job_tmp):
    """Start bin/stage.py with `args` (a held_rotation pretrain, one thread per process, its ranks' job files in
    `job_tmp`), send `sig` to it once epoch 1 is saved, and wait for it to end: (returncode, stdout, stderr)."""
    env = {**held_env(), "TMPDIR": str(job_tmp), "OMP_NUM_THREADS": "1"}  # TMPDIR: a rank's job file
    proc = subprocess.Popen(stage_cmd(runs_dir, *args), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    last = runs_dir / version / "checkpoints" / "pretrain" / "last.pt"
    wait_until(lambda: last.exists() or proc.poll() is not None, 1200, every=0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out, err


@contextlib.contextmanager
def held_task_here():
    """TASK=held_rotation for stages run in this process (stage_here, run_pretrain) and the kernels and
    ranks they start, never holding (a resumed run); forgotten afterwards, so no other test lists it."""
    from imgwang.tasks.registry import TASKS

    env = held_env(hold=False)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("IMGWANG_TASKS", "PYTHONPATH"):
            mp.setenv(name, env[name])
        mp.delenv("IMGWANG_TEST_HOLD", raising=False)
        try:
            yield
        finally:
            TASKS.pop("held_rotation", None)
            sys.modules.pop("held_task", None)


@pytest.fixture
def held_here():
    """held_task_here() for one test."""
    with held_task_here():
        yield


def wait_until(condition, timeout: float, every: float = 0.1) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def one_torch_thread():
    """One thread: on a 2-core machine shared with other jobs, two threads spin-wait and run ~10x slower."""
    from imgwang.core.device import torch_threads

    return torch_threads(1)


def assert_overfit(result: dict) -> None:
    """An overfit_one_batch result: (nearly) perfect on its batch, and the loss down at least tenfold."""
    assert result["train_metric"] >= 0.95
    assert result["last_loss"] <= 0.1 * result["first_loss"]


def plain_image_folder(folder: Path, n: int, sample: Path | None = None, subfolders: int = 1) -> Path:
    """A folder of the first n unlabelled sample images, no train/ or val/ (spread over `subfolders`
    subfolders when > 1, as photos usually come)."""
    if sample is None:
        from imgwang.data.resolve import resolve_data

        sample = resolve_data("sample")
    import shutil

    for i, path in enumerate(sorted((sample / "unsup").iterdir())[:n]):
        dest = folder / f"roll{i % subfolders}" / path.name if subfolders > 1 else folder / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return folder


def ranks_alive(tmp_path) -> list:
    """Rank processes of launches whose job file lies under tmp_path (their TMPDIR)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "imgwang.distributed.worker" in cmd and str(tmp_path) in cmd:
            found.append(p)
    return found


# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup --no-loadscope-reorder`, in
# the Makefile; the scheduler is pytest_xdist_make_scheduler's, below). The longest tests (process tests, tens
# of seconds to minutes each) start first, in this order, so the short ones fill the other worker around them
# instead of one long test ending the run alone.
START_FIRST = [
    "test_distributed_stage.py",  # NPROC=2 stages (one interrupted), while the other worker makes the pipeline
    "test_notebooks.py::test_pipeline_writes",  # makes the shared pipeline (conftest's `pipeline`: a sweep)
    "test_stage_runs.py::test_a_killed",
    "test_notebooks.py::test_sigterm",
    "test_distributed_launch.py::test_two_nodes",  # then it reads the pipeline
    "test_stage_runs.py::test_two_pretrains",
    "test_task_simple.py::test_task_learns_what_generalises",
    "test_distributed_launch.py::test_ctrl_c",
    "test_task_contrastive.py::test_swav_overfits",
    "test_distributed_step.py",
    "test_notebooks.py::test_random_init_baseline",  # `make compare` on the pipeline: made by now
    "test_threads.py::test_bench_share",
    "test_finetune_protocol.py::test_evaluate_scores",
    "test_stage_seeds.py",
    "test_notebooks.py::test_a_plain_folder",
    "test_bench.py",
    "test_bad_input.py::test_make_reports",
]


def pytest_collection_modifyitems(config, items):
    """The START_FIRST tests move to the front (a stable sort: the rest keep their order)."""

    def rank(item):
        where = f"{item.path.name}::{item.name}"
        return next((i for i, start in enumerate(START_FIRST) if where.startswith(start)), len(START_FIRST))

    items.sort(key=rank)


def files_with_shared_fixtures() -> set[str]:
    """Test files that define a module- or class-scoped fixture (their tests must run on one worker, or each
    worker would pay for the fixture again), or that say `ONE_WORKER = True` (their tests share module state)."""
    import re

    scoped = re.compile(r"scope=[\"'](module|class|package)[\"']|^ONE_WORKER = True", re.MULTILINE)
    return {p.name for p in Path(__file__).parent.glob("test_*.py") if scoped.search(p.read_text())}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` that also keeps each file of files_with_shared_fixtures() on one worker; every other
    test is scheduled on its own. (xdist 3.8 marks groups by rewriting item._nodeid, which pytest 9 no longer
    reads, so xdist_group marks added here would be lost.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    shared = files_with_shared_fixtures()

    class SharedFixturesOnOneWorker(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if Path(path).name in shared else super()._split_scope(nodeid)

    return SharedFixturesOnOneWorker(config, log)
