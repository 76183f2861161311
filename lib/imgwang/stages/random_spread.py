"""The random-init reference's spread: the kNN of more random-init encoders (seeds SEED+1, ...) beside SEED's.

One random init is one draw of the bar a pretrained encoder must clear. On the sample, tinyconv's random-init kNN
moves between 7.33% and 13.67% over seeds 0-4 (docs/results.md, "BatchNorm statistics of random-init
references"): more than the paired interval on 300 scoring images accounts for, since that interval holds the
reference fixed. Evaluate scores its own seed's random-init encoder in full (kNN, probe, the paired comparison);
this adds the kNN of `random_inits - 1` more, each built and BatchNorm-estimated exactly as `make evaluate
SEED=<s>` builds its reference (stages.evaluate.frozen_encoders, evaluate.bn_stats), so a margin can be read
against the bar's spread over inits, not one draw of it. kNN only: it is the cheap score (one feature pass each),
and the one the references' margins are read on.
"""

from __future__ import annotations

from pathlib import Path

from ..evaluate.knn import knn_accuracy
from ..evaluate.metrics import mean_std


def random_knn_spread(cfg: dict, sd, fit_rows, train, val, device, n_classes: int, first_acc: float) -> dict:
    """{"seeds", "knn_accs", "mean", "sd"} over `cfg["random_inits"]` random inits; the first is the run's own seed,
    whose kNN (`first_acc`) evaluate has already scored. sd is the sample standard deviation (0.0 for one init)."""
    from .evaluate import frozen_encoders, frozen_features  # (evaluate imports this module)

    seeds = [cfg["seed"] + i for i in range(cfg["random_inits"])]
    accs = [float(first_acc)]
    for seed in seeds[1:]:
        at_seed = {**cfg, "seed": seed, "from_version": "none"}
        encoder = frozen_encoders(at_seed, Path("."))["random"]
        _, (tf, tl, _), (vf, vl, _) = frozen_features(encoder, True, at_seed, sd, fit_rows, train, val, device)
        accs.append(knn_accuracy(tf, tl, vf, vl, k=cfg.get("knn_k", 20), temperature=cfg.get("knn_t", 0.07),
                                 n_classes=n_classes))
    mean, spread = mean_std(accs)
    return {"seeds": seeds, "knn_accs": accs, "mean": mean, "sd": spread}


def describe_spread(spread: dict, pretrained_acc: float | None = None) -> str:
    """One line: the random-init kNN over its inits, and where the pretrained kNN stands against them."""
    seeds, accs = spread["seeds"], spread["knn_accs"]
    if len(accs) == 1:
        return f"random: one random init scored (seed {seeds[0]}); P=\"-p random_inits 5\" shows the spread over inits"
    each = ", ".join(f"{100 * a:.2f}" for a in accs)
    line = (f"random: kNN over {len(accs)} random inits (seeds {seeds[0]}-{seeds[-1]}): {100 * spread['mean']:.2f}% "
            f"± {100 * spread['sd']:.2f} ({each}); the reference above is seed {seeds[0]}'s")
    if pretrained_acc is not None:
        line += (f"; the pretrained kNN is {100 * (pretrained_acc - spread['mean']):+.2f} points from their mean, "
                 f"{100 * (pretrained_acc - max(accs)):+.2f} from the highest")
    return line
