"""The training options a stage passes to `fit` (and the classifier): names, defaults and checks come from the
stage spec (imgwang/stages/spec.py), where `make help` and the notebooks' parameters cells read them too.

Defaults keep every earlier run's behaviour (AdamW, one-cycle, weight decay 0.05, no label smoothing, fastai
head dropout 0.25); the Imagewang leaderboard recipe sets its own (imgwang.recipe). Every value lands in the
stage's recorded config, so `make compare` can match runs fine-tuned alike.
"""

from __future__ import annotations

from ..stages.spec import stage_spec

FIT_KEYS = ("optimizer", "schedule", "flat_frac", "weight_decay")


def _defaults(stage: str, names: tuple[str, ...]) -> dict:
    return {n: stage_spec(stage).param(n).default for n in names}


TRANSFER_DEFAULTS = _defaults("transfer", (*FIT_KEYS, "label_smoothing", "head_dropout"))
PRETRAIN_DEFAULTS = _defaults("pretrain", (*FIT_KEYS, "pretrain_on_val"))


def fit_options(cfg: dict) -> dict:
    """The `fit` keyword arguments of a stage config."""
    return {k: cfg[k] for k in FIT_KEYS}


def check_options(cfg: dict, defaults: dict) -> dict:
    """The options of `cfg` (defaults for absent or empty ones), each checked by its spec check; a stage
    function called without bin/stage.py (tests, bin/ scripts) gets the same values and errors."""
    stage = "transfer" if "label_smoothing" in defaults else "pretrain"
    out = {}
    for name, default in defaults.items():
        value = cfg.get(name)
        value = default if value is None or value == "" else value
        check = stage_spec(stage).param(name).check
        out[name] = check(name, value) if check else value
    return out
