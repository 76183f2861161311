"""The stage notebooks through papermill, as `make` runs them: tiny sizes on the sample data.

One sweep of one point (conftest's session `pipeline`: bin/sweep.py, whose two `bin/stage.py pipeline` processes
make the pipeline PIPELINE_VERSION and its baseline BASELINE_VERSION) is shared by the tests that read their scraps; further
stages run in this process (conftest's stage_here: the kernels are still their own processes) unless a signal
must reach bin/stage.py itself.
"""

import json
import os
import re
import shutil
import signal
import zipfile

import nbformat
import pytest
import scrapbook as sb

from conftest import (
    BASELINE_VERSION,
    FAKE_KEY,
    PIPELINE_VERSION,
    TINY_STAGE,
    plain_image_folder,
    ranks_alive,
    saved_text,
    scraps,
    signal_held_stage,
    stage_here,
    stages_of,
    wait_until,
)

TINY = TINY_STAGE


def files_holding(folder, secret: str) -> list[str]:
    """Every file under folder (and every member of a zip archive) whose bytes contain the secret."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            if secret.encode() in path.read_bytes():
                hits.append(str(path))
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    hits += [f"{path}:{m}" for m in z.namelist() if secret.encode() in z.read(m)]
    return hits


def test_the_api_key_reaches_no_file(pipeline):
    assert list((pipeline / PIPELINE_VERSION / "comet").iterdir()), "offline tracking wrote nothing"
    assert files_holding(pipeline, FAKE_KEY) == []


def test_tracking_says_where_its_archive_is_in_one_line_without_comet_chatter(pipeline):
    text = "".join((pipeline / PIPELINE_VERSION / f"{name}.ipynb").read_text() for name in ("01-pretrain", "02-transfer"))
    archives = sorted((pipeline / PIPELINE_VERSION / "comet").glob("*.zip"))
    assert len(archives) == 2  # one experiment per training stage
    assert all(f"comet offline: archive {a.resolve()}" in text or f"comet offline: archive {a}" in text for a in archives)
    assert "COMET WARNING" not in text and "COMET INFO" not in text


def test_pipeline_writes_four_executed_notebooks_and_run_json(pipeline):
    run = pipeline / PIPELINE_VERSION
    for name in ("01-pretrain", "02-transfer", "03-evaluate", "04-review"):
        assert (run / f"{name}.ipynb").exists()
    info = json.loads((run / "run.json").read_text())
    assert {s: v["status"] for s, v in info["stages"].items()} == dict.fromkeys(
        ["pretrain", "transfer", "evaluate", "review"], "done")
    assert info["environment"]["packages"]["torch"] and "git_commit" in info["environment"]
    assert info["stages"]["pretrain"]["config"]["task_params"] == {"pct_pos": 0.6}
    for record in info["stages"].values():  # each kernel took its share of the cores (imgwang.core.threads)
        assert record["threads"]["source"] == "share" and 1 <= record["threads"]["threads"] <= os.cpu_count()
    assert (run / "encoder.pt").exists() and (run / "classifier.pt").exists() and (run / "predictions.csv").exists()


def test_pretrain_scraps(pipeline):
    s = scraps(pipeline / PIPELINE_VERSION / "01-pretrain.ipynb")
    assert s["task"] == "patchwork" and s["pretext_metric_name"] == "accuracy"
    assert s["pretext_chance"] == pytest.approx(0.6)  # chance follows pct_pos
    assert s["config"]["arch"] == "tinyconv" and s["config"]["seed"] == 0 and s["config"]["lr"] > 0  # defaults resolved
    assert len(s["pretrain_history"]) == 1 and 0 <= s["pretext_val_metric"] <= 1
    assert s["pretrain_images_per_s"] > 0 and s["pretrain_wall_s"] > 0
    assert {"train_loss", "val_loss", "val_accuracy", "images_per_s"} <= set(s["pretrain_history"][0])
    assert 0 <= s["pretrain_knn_acc"] <= 1 and s["pretrain_history"][0]["knn_acc"] == s["pretrain_knn_acc"]
    assert 0 <= s["pretrain_knn_init"] <= 1  # the untrained encoder's, the bar the pretext task must clear


def test_saved_notebooks_show_each_progress_bar_once_finished(pipeline):
    """The bars are text in the cells' saved output (imgwang.core.progress), not widgets whose state a saved notebook
    loses, and the saved text holds each bar's final state only: reopened in any viewer, a run shows 100%, n/n."""
    run = pipeline / PIPELINE_VERSION
    for name in ("01-pretrain", "02-transfer", "03-evaluate", "04-review"):
        book = nbformat.read(run / f"{name}.ipynb", as_version=4)
        kinds = {kind for c in book.cells for o in c.get("outputs", []) for kind in o.get("data", {})}
        assert not any("widget" in kind for kind in kinds), (name, kinds)
    steps = scraps(run / "02-transfer.ipynb")["steps_per_epoch"]
    for name, wanted in (("01-pretrain", r"\d+"), ("02-transfer", str(steps))):
        text = saved_text(run / f"{name}.ipynb", "stdout")
        assert "\r" not in text, name  # no overwritten frames left for a viewer to draw
        for desc in ("epoch 1/1", "  val"):
            bars = [line for line in text.splitlines() if line.startswith(desc + ":")]
            assert len(bars) == 1, (name, desc, bars)
            found = re.search(r" 100%\|.*\| (\d+)/(\d+) ", bars[0])
            assert found and found[1] == found[2], (name, bars[0])
            if desc == "epoch 1/1":
                assert re.fullmatch(wanted, found[1]), (name, bars[0])


def test_each_saved_notebook_opens_on_its_answer(pipeline):
    """The summary under the title carries the stage's headline figures from its own scraps and links to its
    sections; the template's parameters cell is folded, its tag kept (imgwang.stages.summary)."""
    from imgwang.stages.summary import SUMMARY_TAG, anchor

    run = pipeline / PIPELINE_VERSION
    pre, t, e = (scraps(run / f"{n}.ipynb") for n in ("01-pretrain", "02-transfer", "03-evaluate"))
    wanted = {
        "01-pretrain": [f"**{pre['pretext_val_metric']:.4f}** vs chance {pre['pretext_chance']:.4f}",
                        f"**{100 * pre['pretrain_knn_acc']:.2f}%** vs {100 * pre['pretrain_knn_init']:.2f}% for the untrained"],
        "02-transfer": [f"val top-1 {100 * t['val_acc']:.2f}% (1 run)", "no leaderboard entry for this size"],
        "03-evaluate": [f"kNN: **{100 * e['knn_acc']:.2f}%** vs random-init {100 * e['knn_acc_random']:.2f}%",
                        f"raw pixels {100 * e['linear_acc_pixels']:.2f}%",
                        f"random-init kNN over 5 inits: {100 * e['knn_acc_random_mean']:.2f}% ± {100 * e['knn_acc_random_sd']:.2f}",
                        f"the pretrained kNN {100 * (e['knn_acc'] - e['knn_acc_random_mean']):+.2f} points from their mean"],
        "04-review": [f"**{scraps(run / '04-review.ipynb')['n_val_mistakes']}** mistakes"],
    }
    for name, parts in wanted.items():
        book = nbformat.read(run / f"{name}.ipynb", as_version=4)
        assert SUMMARY_TAG in book.cells[1].metadata.get("tags", []), name
        summary = book.cells[1].source
        assert all(part in summary for part in parts), (name, summary)
        headings = [line[3:] for c in book.cells[2:] if c.cell_type == "markdown" for line in c.source.splitlines()
                    if line.startswith("## ")]
        assert re.findall(r"\]\(#([^)]+)\)", summary) == [anchor(h) for h in headings] != [], name
        params = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        assert params.metadata["jupyter"]["source_hidden"], name


def test_the_tasks_table_reads_a_finished_pretrain_run(pipeline, tmp_path, capsys):
    """bin/task_table.py reads <prefix>-<task> runs that exist instead of running them again."""
    import shutil

    import task_table  # bin/task_table.py

    shutil.copytree(pipeline / PIPELINE_VERSION, tmp_path / "t-patchwork")
    assert task_table.main(["--tasks", "patchwork", "--prefix", "t", "--runs-dir", str(tmp_path)]) == 0
    s = scraps(pipeline / PIPELINE_VERSION / "01-pretrain.ipynb")
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    assert row[0] == "| patchwork" and row[2] == f"{s['pretext_val_metric']:.3f}" and row[3] == "0.600"
    assert row[5] == f"{s['pretrain_knn_acc']:.3f}" and row[6] == f"{s['pretrain_knn_init']:.3f}"
    assert row[7:10] == ["1", "tinyconv", "32"]


def test_transfer_evaluate_review_scraps(pipeline):
    run = pipeline / PIPELINE_VERSION
    t = scraps(run / "02-transfer.ipynb")
    assert t["from_version"] == PIPELINE_VERSION and len(t["val_accs"]) == 1 and t["val_acc"] == t["val_accs"][0]
    assert str(t["val_acc_std"]) == "nan" and len(t["transfer_history"]) == 1  # one run measures no spread
    assert t["train_bs"] == 32 and t["steps_per_epoch"] == 15  # the sample's 480 labelled images
    e = scraps(run / "03-evaluate.ipynb")
    assert 0 <= e["eval_acc"] <= 1 and 0 <= e["knn_acc"] <= 1 and 0 <= e["linear_acc"] <= 1
    from imgwang.evaluate.linear_probe import WD_GRID

    assert e["linear_wd"] in WD_GRID and e["linear_wd_random"] in WD_GRID  # chosen by CV on train, glued
    assert 0 <= e["linear_cv_acc"] <= 1 and 0 <= e["linear_cv_acc_random"] <= 1
    assert e["eval_acc"] == pytest.approx(t["val_acc"])  # the same classifier scored on the same val set
    assert len(e["per_class_acc"]) == 10  # only the classes val holds
    assert 0 <= e["knn_acc_pixels"] <= 1 and 0 <= e["linear_acc_pixels"] <= 1 and e["eval_accs"] == [e["eval_acc"]]
    for reference in ("random", "pixels"):  # the pretrained kNN against each reference, paired on the same images
        low, high, p = (e[f"knn_vs_{reference}_{part}"] for part in ("ci_low", "ci_high", "p_value"))
        assert low <= e["knn_acc"] - e[f"knn_acc_{reference}"] <= high and 0 < p <= 1
    r = scraps(run / "04-review.ipynb")
    n_val = len((run / "predictions.csv").read_text().splitlines()) - 1
    assert n_val == 300  # the sample's 10 val classes x 30 images, every one predicted
    assert r["n_val_mistakes"] == round((1 - e["eval_acc"]) * n_val)


def test_notebooks_show_their_plots(pipeline):
    for name, scrap in (("01-pretrain", "pretrain_curves"), ("01-pretrain", "pretrain_knn"), ("03-evaluate", "confusion"),
                        ("01-pretrain", "task_examples"), ("02-transfer", "train_examples"),
                        ("04-review", "pretext_mistakes")):
        book = sb.read_notebook(str(pipeline / PIPELINE_VERSION / f"{name}.ipynb"))
        assert "image/png" in book.scraps[scrap].display["data"], f"{name}: {scrap} has no picture"


def panels(notebook, scrap: str) -> int:
    """How many axes a glued figure has, from its saved text form '<Figure size ... with N Axes>'; 0 without a PNG."""
    data = sb.read_notebook(str(notebook)).scraps[scrap].display["data"]
    found = re.search(r"with (\d+) Axes", data.get("text/plain", ""))
    return int(found[1]) if "image/png" in data and found else 0


def test_evaluate_and_review_show_what_the_encoder_learned(pipeline):
    """03-evaluate: 6 val images (one per class), each beside its 4 nearest train images in 3 spaces (pretrained,
    random-init, pixels); a t-SNE map and the main directions' spread per encoder. 04-review: Grad-CAM of 8
    mistakes (image, map for the predicted class, for the true class) and of 8 unsure correct ones (image, map)."""
    run = pipeline / PIPELINE_VERSION
    assert panels(run / "03-evaluate.ipynb", "nearest_neighbours") == 6 * (1 + 3 * 4)
    assert panels(run / "03-evaluate.ipynb", "feature_map") == 2
    assert panels(run / "03-evaluate.ipynb", "feature_spread") == 2  # pretrained beside random-init
    assert panels(run / "04-review.ipynb", "cam_mistakes") == 3 * 8  # a tiny model on 300 val images errs often
    assert panels(run / "04-review.ipynb", "cam_unsure") == 2 * 8


def test_random_init_baseline_and_compare(pipeline, capfd):
    """The baseline (`make pipeline FROM=none`, run by the sweep) and `make compare` of it beside the pipeline."""
    import compare  # bin/compare.py

    base = pipeline / BASELINE_VERSION
    assert scraps(base / "02-transfer.ipynb")["from_version"] == "none"
    assert not (base / "01-pretrain.ipynb").exists()
    evaluated = scraps(base / "03-evaluate.ipynb")
    assert evaluated["knn_acc"] == evaluated["knn_acc_random"]  # no pretrained encoder: the random one is scored
    capfd.readouterr()
    assert compare.main(["--runs-dir", str(pipeline)]) == 0, capfd.readouterr().err[-3000:]
    assert "without encryption" not in capfd.readouterr().err  # (the kernel's own stderr reaches this fd too)
    lines = (pipeline / "compare.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [BASELINE_VERSION, PIPELINE_VERSION]
    assert ",complete (baseline)," in lines[1] and ",complete," in lines[2]
    summary = nbformat.read(pipeline / "05-compare.ipynb", as_version=4).cells[1].source
    assert "**2** versions" in summary and f"- {PIPELINE_VERSION}: " in summary  # its verdict against the baseline, on top
    compared = sb.read_notebook(str(pipeline / "05-compare.ipynb")).scraps
    assert compared["n_runs"].data == 2
    assert "image/png" in compared["accuracy_bars"].display["data"]  # pretrained beside the baseline
    assert "image/png" in compared["pretrain_knn_acc"].display["data"]  # the pipeline's kNN monitor over its epochs
    assert panels(pipeline / "05-compare.ipynb", "pretext_vs_transfer") == 2  # pretext vs gain, kNN vs val_acc
    from imgwang.stages.compare import compare_table
    from imgwang.stages.readable import readable_table

    shown, unfinished = readable_table(compare_table(pipeline))
    assert sorted(shown.index.get_level_values(1)) == [BASELINE_VERSION, PIPELINE_VERSION] and unfinished == []
    group = "sweep sw"  # (tests/test_sweep.py checks the grouping)
    assert shown.loc[(group, BASELINE_VERSION), "verdict"] == "baseline"
    assert shown.loc[(group, PIPELINE_VERSION), "verdict"].endswith("no p (1 run)")
    assert shown.loc[(group, PIPELINE_VERSION), "epochs"] == "1 + 1" and shown.loc[(group, PIPELINE_VERSION), "val_acc"].endswith("%")


def test_a_plain_folder_of_images_pretrains_through_the_notebook(lab_env, tmp_path, capfd):
    folder = plain_image_folder(tmp_path / "photos", 80)
    assert stage_here(tmp_path / "runs", "pretrain", "--data", str(folder), "--task", "rotation", *TINY[2:]) == 0, \
        capfd.readouterr().err[-3000:]
    s = scraps(tmp_path / "runs" / "v1" / "01-pretrain.ipynb")
    assert 0 <= s["pretext_val_metric"] <= 1 and not {"pretrain_knn_acc", "pretrain_knn_init"} & set(s)  # no classes: no kNN
    assert (tmp_path / "runs" / "v1" / "encoder.pt").exists()


def test_a_failing_stage_is_recorded_and_keeps_its_error(pipeline, tmp_path, capfd):
    runs_dir = tmp_path / "runs"
    shutil.copytree(pipeline / PIPELINE_VERSION, runs_dir / PIPELINE_VERSION)  # the shared run stays intact for the other tests
    run = runs_dir / PIPELINE_VERSION
    for classifier in (run / "classifier.pt", *run.glob("checkpoints/transfer-*/classifier.pt")):  # every repeat's
        classifier.write_bytes(b"truncated by a full disk")
    assert stage_here(runs_dir, "evaluate", "--version", PIPELINE_VERSION, "--force", "1") == 1
    assert "error: evaluate failed" in capfd.readouterr().err
    assert stages_of(run)["evaluate"]["status"] == "failed"
    book = nbformat.read(run / "03-evaluate.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in book.cells for o in c.get("outputs", []))
    moved = list(run.glob("replaced-*/03-evaluate.ipynb"))
    assert len(moved) == 1  # FORCE=1 moved the good notebook aside, never deleted it
    assert scraps(moved[0])["eval_acc"] >= 0


def test_sigterm_keeps_the_last_epoch_and_resume_finishes(lab_env, tmp_path, held_here, capfd):
    """What a job manager (SIGTERM to bin/stage.py, which passes it to the kernel) does to a long run: nothing is
    lost, and RESUME=1 completes the epochs. (Ctrl-C in the terminal of `make pretrain NPROC=2`, ranks and all:
    tests/test_distributed_stage.py.)"""
    import torch

    runs_dir = tmp_path / "runs"
    # held_rotation's epoch 2 waits for the signal: the run cannot end before it lands
    args = ["pretrain", "--version", "v1", "--task", "held_rotation", *TINY[:-6], "--epochs", "2", "--bs", "16",
            "--comet", "off", "--nproc", "1", "--device", "cpu"]
    code, out, err = signal_held_stage(runs_dir, args, "v1", signal.SIGTERM, tmp_path)  # a rank's job file: below
    last = runs_dir / "v1" / "checkpoints" / "pretrain" / "last.pt"
    assert code == 130, (out + err)[-3000:]
    assert "interrupted" in err and "continue with RESUME=1 VERSION=v1" in err
    assert stages_of(runs_dir / "v1")["pretrain"]["status"] == "interrupted"
    assert (runs_dir / "v1" / "01-pretrain.ipynb").exists()  # the partial notebook is kept
    assert wait_until(lambda: not ranks_alive(tmp_path), 30, every=0.5), "a rank outlived the interrupt"
    assert torch.load(last, weights_only=True)["epoch"] == 1

    capfd.readouterr()
    assert stage_here(runs_dir, *args, "--resume", "1") == 0, capfd.readouterr().err[-3000:]
    record = stages_of(runs_dir / "v1")["pretrain"]
    assert record["status"] == "done" and record["resumed"] is True
    history = scraps(runs_dir / "v1" / "01-pretrain.ipynb")["pretrain_history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert list(runs_dir.glob("v1/replaced-*/01-pretrain.ipynb"))  # the interrupted notebook, kept aside
