"""Run folders: version numbering, no-overwrite, run.json, secrets, and the compare table."""

import nbformat
import pytest

from imgwang import runs
from imgwang.core.errors import ConfigError
from imgwang.stages import compare


def fake_executed_notebook(path, scraps: dict):
    """An executed notebook holding scraps the way scrapbook glues them (display_data outputs)."""
    book = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"application/scrapbook.scrap.json+json": {"name": k, "data": v, "encoder": "json", "version": 1}},
            metadata={"scrapbook": {"name": k, "data": True, "display": False}},
        )
        for k, v in scraps.items()
    ]
    book.cells = [cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, path)


def test_versions_are_numbered_and_sorted_numerically(tmp_path):
    assert runs.next_version(tmp_path / "missing") == "v1"
    for name in ("v1", "v2", "v10", "baseline"):
        (tmp_path / name).mkdir()
    assert runs.versions(tmp_path) == ["v1", "v2", "v10", "baseline"]
    assert runs.next_version(tmp_path) == "v11"


def test_bad_version_names_are_refused():
    for bad in ("", "../x", "a/b", " v1"):
        with pytest.raises(ConfigError):
            runs.check_version_name(bad)


def test_move_aside_keeps_every_file(tmp_path):
    run = tmp_path / "v1"
    (run / "checkpoints" / "pretrain").mkdir(parents=True)
    (run / "01-pretrain.ipynb").write_text("old notebook")
    (run / "checkpoints" / "pretrain" / "last.pt").write_text("old checkpoint")
    dest = runs.move_aside(run, ["01-pretrain.ipynb", "checkpoints/pretrain", "encoder.pt"])
    assert not (run / "01-pretrain.ipynb").exists()
    assert (dest / "01-pretrain.ipynb").read_text() == "old notebook"
    assert (dest / "pretrain" / "last.pt").read_text() == "old checkpoint"
    second = runs.move_aside(run, ["01-pretrain.ipynb"])
    assert second is None  # nothing left to move: no empty folder made


def test_run_json_updates_merge_and_never_hold_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", "fake-key-123456")
    run = tmp_path / "v1"
    runs.update_stage(run, "pretrain", status="running", config={"lr": 0.1, "note": "key fake-key-123456"})
    runs.update_stage(run, "pretrain", status="done")
    runs.update_stage(run, "transfer", status="failed", error="boom")
    info = runs.read_run_json(run)
    assert info["stages"]["pretrain"] == {"status": "done", "config": {"lr": 0.1, "note": "key <redacted>"}}
    assert info["stages"]["transfer"]["status"] == "failed"
    assert "fake-key-123456" not in (run / "run.json").read_text()
    assert not list(run.glob("*.tmp"))  # atomic write leaves no temporary file


def test_encoder_path_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no such run"):
        runs.encoder_path(tmp_path, "v3")
    (tmp_path / "v3").mkdir()
    with pytest.raises(ConfigError, match="encoder.pt does not exist"):
        runs.encoder_path(tmp_path, "v3")


def test_compare_lists_complete_failed_and_partial_runs(tmp_path):
    cfg = {"arch": "resnet18", "data": "sample", "size": 64, "epochs": 3, "task": "rotation"}
    for v in ("v1", "v2"):
        fake_executed_notebook(tmp_path / v / "01-pretrain.ipynb", {
            "config": cfg, "task": "rotation", "pretext_metric_name": "accuracy", "pretext_val_metric": 0.61,
            "pretext_chance": 0.25, "pretrain_wall_s": 12.0})
    fake_executed_notebook(tmp_path / "v1" / "02-transfer.ipynb", {
        "config": {**cfg, "epochs": 5}, "from_version": "v1", "val_acc": 0.5, "val_acc_std": 0.01, "val_accs": [0.49, 0.51]})
    fake_executed_notebook(tmp_path / "v1" / "03-evaluate.ipynb", {
        "knn_acc": 0.4, "linear_acc": 0.45, "eval_acc": 0.5, "knn_acc_random": 0.2, "knn_acc_random_inits": [0.2, 0.1],
        "knn_acc_random_mean": 0.15, "knn_acc_random_sd": 0.0707})
    fake_executed_notebook(tmp_path / "v1" / "04-review.ipynb", {"n_val_mistakes": 3})
    for stage in runs.STAGES:
        runs.update_stage(tmp_path / "v1", stage, status="done")
    runs.update_stage(tmp_path / "v2", "pretrain", status="done")
    runs.update_stage(tmp_path / "v2", "transfer", status="failed")
    (tmp_path / "v2" / "02-transfer.ipynb").write_text("{ not json")  # a broken notebook
    (tmp_path / "v3").mkdir()  # an empty folder

    table, path = compare.write_compare(tmp_path)
    rows = {r["version"]: r for r in table.to_dict("records")}
    assert list(rows) == ["v1", "v2", "v3"]
    assert rows["v1"]["status"] == "complete"
    assert rows["v1"]["val_acc"] == 0.5 and rows["v1"]["runs"] == 2 and rows["v1"]["knn_acc"] == 0.4
    assert rows["v1"]["task"] == "rotation" and rows["v1"]["transfer_epochs"] == 5 and rows["v1"]["pretrain_epochs"] == 3
    assert (rows["v1"]["knn_acc_random"], rows["v1"]["knn_acc_random_mean"], rows["v1"]["knn_acc_random_sd"]) == (0.2, 0.15, 0.0707)
    assert rows["v2"]["status"] == "pretrain:done transfer:failed"
    assert rows["v2"]["pretext_val_metric"] == 0.61
    assert rows["v3"]["status"] == "no run.json"
    assert path.read_text().splitlines()[0].startswith("version,status,task")
    text = compare.format_table(table)
    assert "61.00" in text and "transfer:failed" in text
    assert " 3 " in text and "3.0" not in text  # epochs print as whole numbers despite missing values


def test_the_readable_table_shows_runs_whose_stages_so_far_are_done_and_lists_the_broken_apart():
    """Issue-style runs (pretrain, transfer, evaluate; no review) and a pretrain alone are read like complete ones;
    a failed, running or interrupted stage puts the version among the lines apart."""
    import pandas as pd

    from imgwang.stages.readable import readable_table

    statuses = {"v1": "complete", "v2": "pretrain:done transfer:done evaluate:done", "v3": "pretrain:done",
                "v4": "pretrain:done transfer:done evaluate:done review:stale", "v5": "pretrain:done transfer:failed",
                "v6": "pretrain:running", "v7": "pretrain:interrupted (process gone)", "v8": "no run.json", "v9": "empty"}
    table = pd.DataFrame([{"version": v, "status": s, "task": "rotation", "val_acc": 0.5} for v, s in statuses.items()])
    table.loc[0, ["knn_acc_random", "knn_acc_random_mean", "knn_acc_random_sd"]] = [0.1367, 0.1067, 0.0295]
    table.loc[1, "knn_acc_random"] = 0.12  # evaluated before the spread over inits was scored: its own seed's
    shown, apart = readable_table(table)
    assert list(shown.index.get_level_values(1)) == ["v1", "v2", "v3", "v4"]
    assert list(shown["kNN random"][:3]) == ["10.67% ± 2.95", "12.00%", ""]
    assert [line.split(":")[0] for line in apart] == ["v5", "v6", "v7", "v8", "v9"]


def test_compare_sets_each_pretrained_run_against_the_newest_baseline_fine_tuned_alike(tmp_path):
    def run(v, from_version, val_acc, size=64):
        cfg = {"arch": "resnet18", "data": "sample", "size": size, "epochs": 5}
        fake_executed_notebook(tmp_path / v / "02-transfer.ipynb", {
            "config": cfg, "from_version": from_version, "val_acc": val_acc, "val_accs": [val_acc]})
        runs.update_stage(tmp_path / v, "transfer", status="done")

    run("v1", "v1", 0.35)
    run("v2", "none", 0.30)
    run("v3", "none", 0.28)  # the newer baseline of the same kind wins
    run("v4", "v1", 0.40, size=96)  # fine-tuned at another size: no baseline matches
    run("v5", "v5", 0.31)
    fake_executed_notebook(tmp_path / "v1" / "01-pretrain.ipynb", {"task": "unmix"})
    run("v6", "v1", 0.33)  # fine-tuned from v1's encoder in a version of its own
    rows = {r["version"]: r for r in compare.compare_table(tmp_path).to_dict("records")}
    assert rows["v6"]["task"] == "unmix" and rows["v6"]["vs_baseline"] == pytest.approx(0.05)
    assert rows["v1"]["baseline"] == "v3" and rows["v1"]["vs_baseline"] == pytest.approx(0.07)
    assert rows["v5"]["vs_baseline"] == pytest.approx(0.03)
    assert compare.is_missing(rows["v4"]["baseline"]) and compare.is_missing(rows["v4"]["vs_baseline"])
    assert compare.is_missing(rows["v2"]["baseline"])  # a baseline is not measured against itself
    text = compare.format_table(compare.compare_table(tmp_path))
    assert "+7.00" in text and "+3.00" in text
    verdicts = compare.baseline_verdicts(compare.compare_table(tmp_path))
    assert len(verdicts) == 4 and verdicts[0].startswith("v1 (unmix)")
    assert "35.00% (1 run) vs v3 28.00% (1 run): +7.00 points; no p-value with one run on a side" in verdicts[0]
    assert "v4 (unmix): no FROM=none baseline fine-tuned alike; the closest, v3, differs in: size 96 vs 64" in verdicts[1]


def test_compare_says_whether_a_gain_is_beyond_the_noise_of_repeated_runs(tmp_path):
    def run(v, from_version, accs):
        mean = sum(accs) / len(accs)
        std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5
        fake_executed_notebook(tmp_path / v / "02-transfer.ipynb", {
            "config": {"arch": "resnet18", "data": "sample", "size": 64, "epochs": 5}, "from_version": from_version,
            "val_acc": mean, "val_acc_std": std, "val_accs": accs})
        runs.update_stage(tmp_path / v, "transfer", status="done")

    run("v1", "none", [0.30, 0.32, 0.31])  # baseline: 0.31 ± 0.01
    run("v2", "v2", [0.35, 0.36, 0.34])  # +4 points; Welch: t = 4.90 on 4 df, p = 0.008
    run("v3", "v3", [0.29, 0.36, 0.33])  # +1.67 points with a wide spread
    table = compare.compare_table(tmp_path)
    lines = compare.baseline_verdicts(table)
    # the CI beside Holm's words is at the level of the Holm step that decided it (v2 first: 1 - 0.05/2; t 3.495 on 4 df x se 0.816 = 2.85)
    assert lines[0].startswith("v2: 35.00% ± 1.00 over 3 runs vs v1 31.00% ± 1.00 over 3 runs: +4.00 points, "
                               "Holm-adjusted 97.5% CI +1.15 to +6.85 and p = 0.016 over 2 comparisons with v1 "
                               "(unadjusted: 95% CI +1.73 to +6.27, p = 0.008): a gain beyond noise")
    assert "speaks for the encoder of v2 only" in lines[0]
    assert "+1.67 points" in lines[1] and "not told apart from noise" in lines[1]
    rows = {r["version"]: r for r in table.to_dict("records")}
    assert rows["v2"]["p_holm"] == pytest.approx(2 * rows["v2"]["p_value"])  # the smaller of two p-values, doubled
    assert rows["v3"]["p_holm"] == pytest.approx(max(rows["v3"]["p_value"], rows["v2"]["p_holm"]))


def test_knn_curves_start_at_the_untrained_encoder_when_a_run_glued_it(tmp_path):
    history = [{"epoch": 1, "train_loss": 1.0, "knn_acc": 0.3}, {"epoch": 2, "train_loss": 0.9, "knn_acc": 0.4}]
    fake_executed_notebook(tmp_path / "v1" / "01-pretrain.ipynb",
                           {"pretrain_history": history, "pretrain_knn_acc": 0.4, "pretrain_knn_init": 0.25})
    fake_executed_notebook(tmp_path / "v2" / "01-pretrain.ipynb", {"pretrain_history": history})  # an older run
    fake_executed_notebook(tmp_path / "v3" / "01-pretrain.ipynb", {"pretrain_history": [{"epoch": 1, "train_loss": 1.0}]})
    curves = compare.knn_curves(tmp_path, ["v1", "v2", "v3"])
    assert [(e["epoch"], e["knn_acc"]) for e in curves["v1"]] == [(0, 0.25), (1, 0.3), (2, 0.4)]
    assert [e["epoch"] for e in curves["v2"]] == [1, 2] and "v3" not in curves  # v3 has no kNN monitor
    row = compare.compare_row(tmp_path / "v1")
    assert row["pretrain_knn_init"] == 0.25 and row["pretrain_knn_acc"] == 0.4


def test_secrets_are_scrubbed_by_env_name_before_a_cut(monkeypatch):
    from imgwang.core.secrets import scrub_text, secret_values

    monkeypatch.setenv("HF_TOKEN", "hf_tokenvalue123")
    monkeypatch.setenv("MY_DB_PASSWORD_FILE_CONTENT", "s3cretpass")
    monkeypatch.setenv("AWS_SECRET", "awsvalue999")
    monkeypatch.setenv("SHORT_KEY", "1")  # too short to be told from a number: left alone
    assert {"hf_tokenvalue123", "s3cretpass", "awsvalue999"} <= set(secret_values())
    assert "1" not in secret_values()
    text = "x" * 495 + "hf_tokenvalue123 and s3cretpass, epoch 1"
    cut = runs.error_text(text)
    assert len(cut) == 500 and "hf_tok" not in cut  # a cut through the key would have kept its head
    assert scrub_text("a awsvalue999 b") == "a <redacted> b"


def _claim_many(runs_dir, n, out):
    from imgwang.runs import claim_version

    out.put([claim_version(runs_dir) for _ in range(n)])


def test_concurrent_claims_never_share_a_version(tmp_path):
    """Eight processes claiming five versions each, all at once: forty distinct folders, v1..v40."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(tmp_path, 5, out)) for _ in range(8)]
    for p in procs:
        p.start()
    claimed = [v for _ in procs for v in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert len(claimed) == len(set(claimed)) == 40
    assert sorted(claimed, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 41)]


def _hold_lock(run_dir, stage, ready):
    from imgwang import runs
    from imgwang.runs import locks

    lock = locks.StageLock(run_dir).acquire(stage)  # noqa: F841  (kept: dropping it would unlock)
    runs.update_stage(run_dir, stage, status="running")
    ready.set()
    import time

    time.sleep(120)


def test_a_running_version_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    import multiprocessing as mp
    import os
    import signal

    from imgwang.runs import locks

    run = tmp_path / "v1"
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(run, "pretrain", ready))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(locks.VersionBusy, match=f"v1 is busy: pretrain is running there \\(pid {holder.pid} on "):
            locks.StageLock(run).acquire("transfer")
        assert locks.holder(run)["pid"] == holder.pid
        assert runs.reconcile(run) == []  # alive: its `running` stays
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # as the OOM killer would
        holder.join(timeout=60)
    assert locks.holder(run) is None and locks.left_behind(run)["stage"] == "pretrain"
    assert runs.reconcile(run) == ["pretrain"]
    assert runs.read_run_json(run)["stages"]["pretrain"]["status"] == "interrupted (process gone)"
    lock = locks.StageLock(run).acquire("pretrain")  # taken over
    assert lock.left_behind["pid"] == holder.pid
    lock.release()
    assert locks.left_behind(run) is None  # released cleanly: no record left


def _update_many(run_dir, worker, n):
    from imgwang import runs

    for i in range(n):
        runs.update_run_json(run_dir, lambda info, i=i: info.setdefault("counts", {}).__setitem__(f"{worker}-{i}", i))


def test_run_json_updates_from_many_processes_are_all_kept(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_update_many, args=(tmp_path / "v1", w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert len(runs.read_run_json(tmp_path / "v1")["counts"]) == 100  # a lost read-modify-write would show


def test_the_newest_version_is_the_last_created_not_the_last_modified(tmp_path):
    for v, created in (("v1", "2026-01-01T10:00:00+0000"), ("v2", "2026-01-02T10:00:00+0000")):
        runs.update_run_json(tmp_path / v, lambda info, c=created: info.update(created=c))
    runs.update_stage(tmp_path / "v1", "evaluate", status="done")  # v1 touched last
    assert runs.newest_version(tmp_path) == "v2"
    (tmp_path / "v3").mkdir()  # claimed, nothing written yet: numbered after v2, yet created unknown
    assert runs.newest_version(tmp_path) == "v2"


def test_stages_built_on_a_replaced_one_become_stale(tmp_path):
    run = tmp_path / "v1"
    for stage in runs.STAGES:
        runs.update_stage(run, stage, status="done", config={"arch": "tinyconv"})
    assert runs.mark_stale(run, ["transfer", "evaluate", "review"], "pretrain ran again") == ["transfer", "evaluate", "review"]
    stages = runs.read_run_json(run)["stages"]
    assert stages["pretrain"]["status"] == "done" and stages["transfer"]["status"] == "stale"
    assert stages["transfer"]["replaced"]["config"] == {"arch": "tinyconv"}  # the old record is kept
    assert compare.run_status(run, {}) == "pretrain:done transfer:stale evaluate:stale review:stale"


def test_compare_shows_a_stage_whose_process_is_gone_as_interrupted(tmp_path):
    runs.update_stage(tmp_path / "v1", "pretrain", status="running")  # no lock held: its process is gone
    assert compare.run_status(tmp_path / "v1", {}) == "pretrain:interrupted (process gone)"


def test_the_compare_summary_gives_each_verdict_a_line_and_the_versions_without_a_baseline_one_line(tmp_path):
    from imgwang.stages.summary import compare_lines

    (tmp_path / "compare.csv").write_text(
        "version,verdict\nb,(a baseline)\nv1,+3.00 points (95% CI ...); helped\n"
        "v2,\"no FROM=none baseline fine-tuned alike; the closest, b, differs in: size 96 vs 64\"\n"
        "v3,no FROM=none baseline yet: run `make pipeline FROM=none` with the same fine-tuning settings\n")
    lines = compare_lines({"n_runs": 4}, tmp_path / "05-compare.ipynb")
    assert lines == ["**4** versions in the table (`compare.csv`)", "v1: +3.00 points (95% CI ...); helped",
                     "2 version(s) without a FROM=none baseline fine-tuned alike, so no verdict: v2, v3"]
