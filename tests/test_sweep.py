"""`make sweep` (imgwang.stages.sweep, bin/sweep.py): the plan, refusals before compute, one tiny point end to end
with its shared baseline, RESUME=1, and what `make compare` makes of it."""

import json

import pytest

from conftest import BASELINE_VERSION, PIPELINE_VERSION, REPO, SWEEP_WORDS, stages_of

TINY = ["DATA=sample", "ARCH=tinyconv", "SIZE=32", "EPOCHS=1", "BS=32", "COMET=off", "FT_EPOCHS=1", "THREADS=1"]


def in_process(runs_dir, capsys, *words):
    """bin/sweep.py's main in this process (the refusals and the plan need no subprocess): (code, stdout, stderr)."""
    import sweep as sweep_script  # bin/sweep.py

    code = sweep_script.main([*words, "--runs-dir", str(runs_dir)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_plan_names_each_point_and_seed_and_shares_one_baseline(tmp_path, capsys):
    code, out, err = in_process(tmp_path / "runs", capsys, "TASK=patchwork", *TINY, "SWEEP=patch_frac=0.25,0.35 pct_pos=0.5,0.7",
                                "SEEDS=2", "RUNS=3", "-p", "min_gap", "0.1", "-p", "label_smoothing", "0.1", "DRY=1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("sweep sweep1: 8 runs over 4 points") and len(lines) == 1 + 8 + 1
    assert "POINT=0   sweep1-patch_frac0.25-pct_pos0.5-seed0 " in lines[1]
    assert "sweep1-patch_frac0.25-pct_pos0.5-seed3 " in lines[2] and "SEED=3" in lines[2]  # seed + k * RUNS
    assert "-p patch_frac 0.25 -p pct_pos 0.5" in lines[1] and "-p min_gap 0.1" in lines[1]
    base = lines[-1]
    assert "POINT=8" in base and "VERSION=sweep1-baseline" in base and "FROM=none" in base
    assert "label_smoothing 0.1" in base  # fine-tuned alike
    assert "TASK=" not in base and "EPOCHS=1" not in base.replace("FT_EPOCHS=1", "") and "min_gap" not in base
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("words, says", [
    (["SWEEP=patch_fra=0.25,0.5"], "no parameter of TASK=patchwork"),
    (["SWEEP=pct_pos=0.5,1.5"], "pct_pos"),
    (["SWEEP=flip_p=0.1,0.5"], "fine-tuning"),
    (["SWEEP=lr=fast"], "must be a number"),
    (["SWEEP=pct_pos"], "NAME=v1,v2"),
    (["SWEEP=pct_pos=0.5", "FROM=v1"], "baseline"),
    (["SWEEP=pct_pos=0.5", "NOPE=1"], "unknown word"),
])
def test_a_bad_sweep_is_refused_in_one_line_before_anything_runs(words, says, tmp_path, capsys):
    code, out, err = in_process(tmp_path / "runs", capsys, "TASK=patchwork", *TINY, *words)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err
    assert not (tmp_path / "runs").exists()


def test_one_point_and_its_baseline_run_resume_and_compare(pipeline, capsys):
    """conftest's shared `pipeline` is one sweep of one point (bin/sweep.py, SWEEP_WORDS): each of its seven
    notebooks is a real stage run. What is asserted is the sweep's bookkeeping, RESUME=1 and `make compare`'s
    grouping; the notebooks' contents are tests/test_notebooks.py's."""
    runs_dir = pipeline
    point, base = runs_dir / PIPELINE_VERSION, runs_dir / BASELINE_VERSION
    said = (runs_dir / "sweep.out").read_text()
    assert f"sweep sw: POINT=0 {PIPELINE_VERSION}" in said and f"sweep sw: POINT=1 {BASELINE_VERSION}" in said
    assert said.strip().splitlines()[-1] == "done: sweep sw, 2 runs; `make compare` groups it"
    assert all(r["status"] == "done" for r in stages_of(point).values()) and len(stages_of(point)) == 4
    assert set(stages_of(base)) == {"transfer", "evaluate", "review"}  # FROM=none: nothing to pretrain
    info = json.loads((point / "run.json").read_text())
    assert info["sweep"]["name"] == "sw" and info["sweep"]["point"] == "pct_pos=0.6" and "group" not in info
    assert info["stages"]["pretrain"]["config"]["task_params"]["pct_pos"] == 0.6

    # in this process: neither runs a stage (the versions are there and done)
    code, out, err = in_process(runs_dir, capsys, *SWEEP_WORDS)  # without RESUME=1 a sweep never runs into its own versions
    assert code == 2 and "RESUME=1" in err
    code, out, err = in_process(runs_dir, capsys, *SWEEP_WORDS, "RESUME=1")
    assert code == 0 and out.count("done already") == 2, err

    from imgwang.stages.compare import compare_table
    from imgwang.stages.readable import readable_table
    from imgwang.stages.sweep_plots import plot_sweep, sweep_points, sweeps

    table = compare_table(runs_dir)
    row = table[table["version"] == point.name].iloc[0]
    assert row["sweep"] == "sw" and row["baseline"] == "sw-baseline"  # judged against its sweep's own baseline
    shown, unfinished = readable_table(table)
    assert unfinished == [] and list(shown.index.get_level_values(0)) == ["sweep sw", "sweep sw"]
    assert sweeps(table) == ["sw"]
    points, baseline = sweep_points(table, "sw")
    assert list(points["pct_pos"]) == [0.6] and baseline["version"] == "sw-baseline"
    assert len(plot_sweep(points, baseline, "sw").axes) == 4  # one swept parameter x four metrics


def test_the_makefile_passes_every_sweep_variable_of_the_spec():
    from imgwang.spec import SWEEP_VARS

    line = next(x for x in (REPO / "Makefile").read_text().splitlines() if x.startswith("SWEEP_VARS :="))
    assert line.split(":=")[1].split() == [v.name for v in SWEEP_VARS]
