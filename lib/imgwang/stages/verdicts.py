"""Did pretraining help? Each pretrained entry against the newest random-init baseline fine-tuned alike.

An entry is one version, or a group of versions that repeat the same pretraining with different seeds
(`make pipeline SEEDS=3`, recorded as `group` in run.json). The unit of replication is what varies
between the things a verdict is about:
- a group of pretrained versions: each pretrained encoder (the mean over its fine-tuning runs), so the
  verdict speaks for the pretraining recipe, not for one lucky encoder;
- a single pretrained version: its fine-tuning runs, so the verdict speaks for that encoder only;
- a baseline (FROM=none): every fine-tuning run, since each starts from its own random encoder.
Baselines match on every fine-tuning setting (all transfer parameters but those in IGNORED), so an option
added to transfer later is matched without a change here; rows scored on different splits never meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..evaluate.stats import ALPHA, holm, holm_levels, p_text, pooled_std, runs_needed, sample_std, welch

# Transfer parameters that do not change what is measured: where and how a run ran, not how it fine-tuned.
IGNORED = frozenset({"seed", "runs", "version", "runs_dir", "device", "comet", "resume", "from_version", "threads",
                     "nproc", "nnodes", "node_rank", "master"})


def finetune_settings(cfg: dict) -> dict:
    """The transfer parameters a baseline must share. A run recorded before an option existed ran with
    that option's default (the split: val), so defaults fill what its config lacks."""
    from ..spec import stage_spec

    if not cfg:
        return {}
    settings = {k: v for k, v in {**stage_spec("transfer").defaults(), **cfg}.items() if k not in IGNORED}
    return {**settings, "split": cfg.get("split") or "val"}


def differences(a: dict, b: dict) -> list[str]:
    """'lr 0.001 vs 0.002' for every setting where a and b differ (a key only one has counts too)."""
    missing = "(not recorded)"
    return [f"{k} {a.get(k, missing)} vs {b.get(k, missing)}" for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


@dataclass
class Entry:
    name: str
    members: list[dict]  # compare rows, in version order
    grouped: bool = False
    stats: dict = field(default_factory=dict)

    @property
    def first(self) -> dict:
        return self.members[0]

    @property
    def baseline(self) -> bool:
        return self.first["from"] == "none"

    @property
    def settings(self) -> dict:
        return self.first["_finetune"]

    @property
    def runs_per_encoder(self) -> list[list[float]]:
        return [row["_accs"] for row in self.members]

    @property
    def values(self) -> list[float]:
        """What the test treats as independent replicates (see the module docstring)."""
        if self.grouped and not self.baseline:
            return [float(np.mean(accs)) for accs in self.runs_per_encoder]
        return [a for accs in self.runs_per_encoder for a in accs]

    @property
    def n_runs(self) -> int:
        return sum(len(accs) for accs in self.runs_per_encoder)

    def describe(self) -> str:
        """'34.00% ± 2.00 over 3 encoders × 3 fine-tunings' (the spread is that of the test's units)."""
        v = self.values
        mean = 100 * float(np.mean(v))
        if len(v) < 2:
            return f"{mean:.2f}% (1 run)"
        spread = f"{mean:.2f}% ± {100 * sample_std(v):.2f}"
        if self.grouped and not self.baseline:
            per = sorted({len(a) for a in self.runs_per_encoder})
            ft = pooled_std(self.runs_per_encoder)
            ft_text = f", fine-tuning spread ± {100 * ft:.2f}" if not math.isnan(ft) else ""
            return f"{spread} over {len(v)} encoders × {'/'.join(map(str, per))} fine-tuning runs{ft_text}"
        return f"{spread} over {len(v)} runs"


def build_entries(rows: list[dict]) -> list[Entry]:
    """Entries in version order (a group where its newest member stands) from rows with fine-tuning runs."""
    placed: list[tuple[int, Entry]] = []
    groups: dict[str, Entry] = {}
    for position, row in enumerate(rows):
        if not row.get("_accs"):
            continue
        group = row.get("group")
        if not group:
            placed.append((position, Entry(row["version"], [row])))
            continue
        if group not in groups:
            groups[group] = Entry(group, [], grouped=True)
        groups[group].members.append(row)
        groups[group].stats["_position"] = position
    placed += [(e.stats.pop("_position"), e) for e in groups.values()]
    return [e for _, e in sorted(placed, key=lambda pair: pair[0])]


def judge(entries: list[Entry]) -> None:
    """Fill each pretrained entry's stats: baseline, difference, CI, p, Holm's p, and the verdict in words."""
    baselines = [e for e in entries if e.baseline]
    by_baseline: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.baseline:
            entry.stats = {"verdict": "(a baseline)"}
            continue
        alike = [b for b in baselines if b.settings == entry.settings]
        if not alike:
            entry.stats = {"verdict": no_baseline(entry, baselines)}
            continue
        # a sweep's points meet the sweep's own baseline (so Holm runs across the sweep's points), others the newest
        own = [b for b in alike if entry.first.get("sweep") and b.first.get("sweep") == entry.first.get("sweep")]
        base = (own or alike)[-1]
        entry.stats = {"baseline": base.name, **welch(entry.values, base.values)}
        by_baseline.setdefault(base.name, []).append(entry)
    for group in by_baseline.values():
        tested = sum(not math.isnan(e.stats["p_value"]) for e in group)
        p_values = [e.stats["p_value"] for e in group]
        for entry, p, level in zip(group, holm(p_values), holm_levels(p_values)):
            base = next(b for b in baselines if b.name == entry.stats["baseline"])
            entry.stats["p_holm"] = p
            if not math.isnan(level):  # the CI Holm's decision speaks for (the 95% one stays in ci_low/ci_high)
                ci = welch(entry.values, base.values, confidence=level)
                entry.stats.update(ci_level_holm=level, ci_low_holm=ci["ci_low"], ci_high_holm=ci["ci_high"])
            entry.stats["verdict"] = verdict(entry, base, tested)


def no_baseline(entry: Entry, baselines: list[Entry]) -> str:
    if not baselines:
        return "no FROM=none baseline yet: run `make pipeline FROM=none` with the same fine-tuning settings"
    # the baseline that differs in the fewest settings (the newest of those): the one a matching run is nearest to
    _, closest = min(enumerate(baselines), key=lambda kb: (len(differences(entry.settings, kb[1].settings)), -kb[0]))
    diff = differences(entry.settings, closest.settings)
    return f"no FROM=none baseline fine-tuned alike; the closest, {closest.name}, differs in: {'; '.join(diff)}"


def verdict(entry: Entry, base: Entry, n_tested: int) -> str:
    """'+3.44 points, 95% CI -1.20 to +8.00, p = 0.13: not told apart from noise' and what it speaks for.

    With several comparisons against one baseline the words follow Holm's adjusted p, and so does the first
    CI: its level is that of the Holm step that decided the comparison (stats.holm_levels), so it excludes 0
    exactly when the words say "beyond noise"; the unadjusted 95% CI and p follow, named as such."""
    s = entry.stats
    head = f"{entry.describe()} vs {base.name} {base.describe()}: {100 * s['diff']:+.2f} points"
    if math.isnan(s["p_value"]):
        return f"{head}; {too_few(entry, base)}"
    p = s["p_holm"] if n_tested > 1 else s["p_value"]
    if p < ALPHA:
        words = "a gain beyond noise" if s["diff"] > 0 else "a loss beyond noise"
    else:
        words = "not told apart from noise"
    ci95 = f"{100 * s['ci_low']:+.2f} to {100 * s['ci_high']:+.2f}"
    if n_tested > 1:
        level = f"{100 * s['ci_level_holm']:.2f}".rstrip("0").rstrip(".")
        stats_text = (f"Holm-adjusted {level}% CI {100 * s['ci_low_holm']:+.2f} to {100 * s['ci_high_holm']:+.2f} and "
                      f"{p_text(p)} over {n_tested} comparisons with {base.name} (unadjusted: 95% CI {ci95}, "
                      f"{p_text(s['p_value'])})")
    else:
        stats_text = f"95% CI {ci95}, {p_text(s['p_value'])}"
    return f"{head}, {stats_text}: {words}; {scope(entry)}"


def scope(entry: Entry) -> str:
    if entry.grouped:
        return f"over {len(entry.members)} pretraining seeds ({', '.join(r['version'] for r in entry.members)})"
    return f"speaks for the encoder of {entry.first['version']} only (pretrain with SEEDS=3 to speak for the recipe)"


def too_few(entry: Entry, base: Entry) -> str:
    """One run on a side (or no spread): no p-value; how many runs a side would tell this gap from noise."""
    if len(entry.values) > 1 and len(base.values) > 1:
        return "every run on both sides scored the same: no spread to test with"
    spreads = [sample_std(e.values) for e in (entry, base) if len(e.values) > 1]
    std = max([s for s in spreads if not math.isnan(s)], default=math.nan)
    n = runs_needed(entry.stats["diff"], std)
    unit = "pretraining seeds (SEEDS)" if entry.grouped else "runs (RUNS)"
    if n is not None:
        return (f"no p-value with one run on a side; with the spread seen ({100 * std:.2f} points), about {n} {unit} "
                f"a side would tell a gap this size from noise (80% power, p < 0.05)")
    return f"no p-value with one run on a side: repeat with at least 2 {unit} a side, better 3 or more"


