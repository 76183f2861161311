"""`make bench` stays runnable: a tiny run prints every measurement and ends with the three ratio lines."""

import os
import re
import subprocess
import sys

from conftest import REPO


def test_bench_prints_its_measurements_and_ends_with_the_three_ratios(tmp_path):
    # timm's test_resnet (a few thousand weights): the default resnet18 spent 50 of the bench's 60 s in its steps
    args = ["--n-images", "160", "--size", "32", "--batch-size", "16", "--steps", "1", "--no-big-cache",
            "--device", "cpu", "--methods", "swav,byol", "--arch", "test_resnet", "--work-dir", str(tmp_path / "bench")]
    # one thread: beside the other xdist worker, two would spin-wait against it (the figures are not checked)
    out = subprocess.run([sys.executable, str(REPO / "bin" / "bench.py"), *args], capture_output=True, text=True,
                         timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    for start in ("1. baseline", "2. host feed", "3. device path", "4. test_resnet", "5. task batches", "6. test_resnet method steps",
                  "peak resident memory"):
        assert any(line.startswith(start) for line in lines), f"no line starting {start!r}"
    names = [re.fullmatch(r"(\w+): (\d+\.\d+)", line) for line in lines[-3:]]
    assert [m.group(1) for m in names if m] == ["host_feed_speedup", "device_path_speedup", "step_overhead"]
    assert all(float(m.group(2)) > 0 for m in names)
    assert not (tmp_path / "bench").exists()  # its generated images and caches are cleaned up
