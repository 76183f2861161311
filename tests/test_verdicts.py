"""make compare's statistics: Welch's test, Holm's correction, pretraining replicates, baseline matching."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from test_runs import fake_executed_notebook

from imgwang import runs
from imgwang.core.errors import ConfigError
from imgwang.evaluate import stats
from imgwang.stages import compare, replicates

FT = {"arch": "resnet18", "data": "sample", "size": 64, "epochs": 5, "bs": 32, "lr": 0.002, "freeze_epochs": 0,
      "head_lr_mult": 1.0, "seed": 0, "runs": 3, "device": "auto", "comet": "off", "version": "", "runs_dir": "runs"}


def test_welch_matches_the_textbook_formula_and_scipy():
    a, b = [0.35, 0.36, 0.34, 0.40], [0.30, 0.32, 0.31]
    out = stats.welch(a, b)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch–Satterthwaite
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert out["df"] == pytest.approx(df) and 3 < df < 5  # not the pooled 5, not a normal's infinity
    assert out["p_value"] == pytest.approx(2 * scipy_stats.t.sf(t, df))
    assert out["p_value"] == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((out["diff"] - half, out["diff"] + half))
    assert out["diff"] == pytest.approx(0.0525)


def test_welch_three_runs_a_side_known_answer():
    out = stats.welch([0.35, 0.36, 0.34], [0.30, 0.32, 0.31])  # t = 4.899 on 4 df
    assert out["df"] == pytest.approx(4.0)
    assert out["p_value"] == pytest.approx(0.00805, abs=1e-5)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((0.01733, 0.06267), abs=1e-5)


def test_welch_gives_no_p_with_one_run_or_no_spread():
    assert math.isnan(stats.welch([0.4], [0.3, 0.31])["p_value"])
    assert stats.welch([0.4], [0.3, 0.31])["diff"] == pytest.approx(0.095)
    assert math.isnan(stats.welch([0.4, 0.4], [0.3, 0.3])["p_value"])


def test_holm_on_a_fixed_list():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept non-decreasing: 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.2]) == [0.2]  # one test: nothing to correct
    assert stats.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = stats.holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_holm_levels_on_a_fixed_list():
    # sorted: 0.005 < 0.05/4 and 0.01 < 0.05/3 rejected at their steps; 0.03 >= 0.05/2 stops Holm, 0.04 judged there
    levels = stats.holm_levels([0.01, 0.04, 0.03, 0.005])
    assert levels == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2, 1 - 0.05 / 4])
    assert stats.holm_levels([0.2]) == [pytest.approx(0.95)]  # one test: the plain 95%
    out = stats.holm_levels([float("nan"), 0.001])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.95)  # an untested one does not count


def test_the_holm_level_ci_excludes_zero_exactly_when_the_adjusted_p_says_beyond_noise():
    rng = np.random.default_rng(0)
    agree = 0
    for trial in range(40):
        m = int(rng.integers(2, 6))
        base = rng.normal(0.30, 0.01, 4)
        sides = [rng.normal(0.30 + rng.uniform(-0.03, 0.03), 0.01, 3) for _ in range(m)]
        p = [stats.welch(a, base)["p_value"] for a in sides]
        for a, p_holm, level in zip(sides, stats.holm(p), stats.holm_levels(p)):
            ci = stats.welch(a, base, confidence=level)
            excludes_zero = ci["ci_low"] > 0 or ci["ci_high"] < 0
            assert excludes_zero == (p_holm < stats.ALPHA), (trial, p, p_holm, level, ci)
            agree += excludes_zero
    assert agree >= 10  # both kinds of case were met


def test_runs_needed_grows_as_the_gap_shrinks():
    big, small = stats.runs_needed(0.05, 0.02), stats.runs_needed(0.01, 0.02)
    assert 2 <= big < small
    assert stats.runs_needed(0.02, 0.0) is None and stats.runs_needed(0.0, 0.02) is None
    # the normal approximation 2 (z_.975 + z_.8)^2 (sd / gap)^2 = 63 is a lower bound for the t-test
    assert 63 <= small <= 66


def transfer_run(runs_dir, v, from_version, accs, group=None, pretrain_seed=None, **settings):
    if group:
        runs.write_run_json(runs_dir / v, {"version": v, "group": group})
    mean = sum(accs) / len(accs)
    fake_executed_notebook(runs_dir / v / "02-transfer.ipynb", {
        "config": {**FT, **settings}, "from_version": from_version, "val_acc": mean,
        "val_acc_std": stats.sample_std(accs) if len(accs) > 1 else float("nan"), "val_accs": accs})
    if pretrain_seed is not None:
        fake_executed_notebook(runs_dir / v / "01-pretrain.ipynb", {
            "task": "simclr", "config": {"arch": "resnet18", "data": "sample", "size": 64, "epochs": 15, "seed": pretrain_seed}})
    runs.update_stage(runs_dir / v, "transfer", status="done")


def test_pretraining_replicates_are_one_entry_with_encoders_as_the_unit(tmp_path):
    encoders = {"g-seed0": [0.40, 0.42, 0.41], "g-seed1": [0.36, 0.35, 0.37], "g-seed2": [0.45, 0.44, 0.46]}
    for seed, (v, accs) in enumerate(encoders.items()):
        transfer_run(tmp_path, v, v, accs, group="g", pretrain_seed=seed)
    transfer_run(tmp_path, "h-none", "none", [0.30, 0.33, 0.31, 0.34, 0.29])
    table = compare.compare_table(tmp_path)
    assert list(table["version"]) == ["g-seed0", "g-seed1", "g-seed2", "g", "h-none"]
    row = table[table["version"] == "g"].iloc[0]
    means = [np.mean(a) for a in encoders.values()]
    assert row["encoders"] == 3 and row["runs"] == 9 and row["seed"] == "0 1 2"
    assert row["val_acc"] == pytest.approx(np.mean(means))
    assert row["val_acc_std"] == pytest.approx(np.std(means, ddof=1))  # between encoders
    assert row["finetune_std"] == pytest.approx(0.01)  # within each encoder: every one spreads by ±1 point
    welch = scipy_stats.ttest_ind(means, [0.30, 0.33, 0.31, 0.34, 0.29], equal_var=False)
    assert row["p_value"] == pytest.approx(welch.pvalue)  # 3 encoder means, not 9 runs
    assert row["baseline"] == "h-none" and row["vs_baseline"] == pytest.approx(np.mean(means) - 0.314)
    members = table[table["group"] == "g"]
    assert members["verdict"].tolist()[:3] == ["(in group g)"] * 3
    (line,) = compare.baseline_verdicts(table)
    assert line.startswith("g (simclr): ") and "over 3 encoders × 3 fine-tuning runs" in line
    assert "over 3 pretraining seeds (g-seed0, g-seed1, g-seed2)" in line


def test_without_a_matching_baseline_the_closest_one_is_named_not_the_newest(tmp_path):
    """A newer baseline on other data says little about what a matching run needs; the one that differs in the
    fewest settings does."""
    transfer_run(tmp_path, "b-near", "none", [0.30, 0.31], lr=0.001)
    transfer_run(tmp_path, "b-far", "none", [0.30, 0.31], data="/other/folder", size=128, lr=0.001)
    transfer_run(tmp_path, "v1", "v1", [0.40, 0.41])
    (line,) = compare.baseline_verdicts(compare.compare_table(tmp_path))
    assert line.startswith("v1: no FROM=none baseline fine-tuned alike; the closest, b-near, differs in: lr ")


def test_a_baseline_must_match_every_fine_tuning_setting(tmp_path):
    transfer_run(tmp_path, "v1", "none", [0.30, 0.31, 0.32], lr=0.001)
    transfer_run(tmp_path, "v2", "none", [0.30, 0.31, 0.32], label_smoothing=0.1)  # an option added later
    transfer_run(tmp_path, "v3", "v3", [0.40, 0.41, 0.42], seed=7, device="cpu")  # seed and device do not count
    transfer_run(tmp_path, "v4", "none", [0.30, 0.31, 0.32], split="dev")
    lines = compare.baseline_verdicts(compare.compare_table(tmp_path))
    assert lines == ["v3: no FROM=none baseline fine-tuned alike; the closest, v4, differs in: split val vs dev"]
    transfer_run(tmp_path, "v5", "none", [0.30, 0.31, 0.32], seed=3)
    table = compare.compare_table(tmp_path)
    assert table.set_index("version").loc["v3", "baseline"] == "v5"
    assert table.set_index("version").loc["v3", "split"] == "val"


def test_the_mismatch_names_every_setting_that_differs(tmp_path):
    transfer_run(tmp_path, "v1", "none", [0.30, 0.31], lr=0.001, label_smoothing=0.1, newer_option=1)
    transfer_run(tmp_path, "v2", "v2", [0.40, 0.41])  # recorded before label_smoothing and newer_option existed
    (line,) = compare.baseline_verdicts(compare.compare_table(tmp_path))
    assert line.endswith("differs in: label_smoothing 0.0 vs 0.1; lr 0.002 vs 0.001; newer_option (not recorded) vs 1")
    transfer_run(tmp_path, "v3", "none", [0.30, 0.31], label_smoothing=0.0)  # the default, written out
    assert compare.compare_table(tmp_path).set_index("version").loc["v2", "baseline"] == "v3"


def test_one_run_on_a_side_says_how_many_runs_are_needed(tmp_path):
    transfer_run(tmp_path, "v1", "none", [0.30, 0.32, 0.31])
    transfer_run(tmp_path, "v2", "v2", [0.33])
    table = compare.compare_table(tmp_path)
    row = table.set_index("version").loc["v2"]
    assert compare.is_missing(row["val_acc_std"]) and compare.is_missing(row["p_value"])
    (line,) = compare.baseline_verdicts(table)
    n = stats.runs_needed(0.02, 0.01)
    assert f"+2.00 points; no p-value with one run on a side; with the spread seen (1.00 points), about {n} runs (RUNS)" in line
    assert compare.format_table(table).splitlines()[2].split()[0] == "v2"


def test_seeds_plans_one_version_per_pretraining_seed_with_distinct_fine_tuning_seeds(lab_env, tmp_path):

    import stage  # bin/stage.py

    from conftest import REPO
    from imgwang.stages import driver

    args = stage.parse_args(["pipeline", "--data", "sample", "--arch", "tinyconv", "--seed", "5", "--runs", "3",
                             "--seeds", "3", "--version", "rep", "--runs-dir", str(tmp_path)])
    planned = driver.plan_replicates(args, ["pretrain", "transfer", "evaluate", "review"], 3, REPO)
    assert [group for group, _ in planned] == ["rep"] * 3
    assert [plans[0].version for _, plans in planned] == ["rep-seed5", "rep-seed6", "rep-seed7"]
    assert [plans[0].parameters["seed"] for _, plans in planned] == [5, 6, 7]  # pretraining seeds
    assert [plans[1].parameters["seed"] for _, plans in planned] == [5, 8, 11]  # fine-tuning: 5-7, 8-10, 11-13
    assert all(plans[1].parameters["from_version"] == plans[0].version for _, plans in planned)
    assert not list(tmp_path.iterdir())  # planning writes nothing
    auto = stage.parse_args(["pipeline", "--data", "sample", "--arch", "tinyconv", "--seeds", "2", "--runs-dir", str(tmp_path)])
    (tmp_path / "v4").mkdir()
    (group, plans), _ = driver.plan_replicates(auto, ["pretrain", "transfer"], 2, REPO)
    assert group == "v5-v6" and plans[0].version == "v5"
    with pytest.raises(ConfigError, match="make pipeline SEEDS=3"):
        replicates.count("3", "transfer")
    (tmp_path / "rep-seed6").mkdir()
    with pytest.raises(ConfigError, match="rep-seed6 already exists"):
        driver.plan_replicates(args, ["pretrain"], 3, REPO)


def test_the_compare_column_words_p_as_the_verdict_sentence_does():
    from imgwang.stages.readable import short_verdict

    row = {"verdict": "+17.67 points ...", "vs_baseline": 0.1767, "p_holm": 0.00058, "p_value": 0.00058}
    assert short_verdict(row) == "+17.67 points, p < 0.001 *"  # was "p = 0.001": rounded up past the sentence's
    assert short_verdict({**row, "p_holm": 0.0123}) == "+17.67 points, p = 0.012 *"
    assert short_verdict({**row, "p_holm": 0.34}) == "+17.67 points, p = 0.34"
