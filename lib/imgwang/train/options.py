"""The training options a stage passes to `fit` (and the classifier), their defaults and their checks.

Defaults keep every earlier run's behaviour (AdamW, one-cycle, weight decay 0.05, no label smoothing, fastai
head dropout 0.25); the Imagewang leaderboard recipe sets its own (imgwang.recipe). Every value
lands in the stage's recorded config, so `make compare` can match runs fine-tuned alike.
"""

from __future__ import annotations

from ..errors import ConfigError
from .optim import check_optimizer
from .schedule import check_schedule

FIT_DEFAULTS = {"optimizer": "adamw", "schedule": "onecycle", "flat_frac": 0.75, "weight_decay": 0.05}
TRANSFER_DEFAULTS = {**FIT_DEFAULTS, "label_smoothing": 0.0, "head_dropout": 0.25}
PRETRAIN_DEFAULTS = {**FIT_DEFAULTS, "pretrain_on_val": False}


def fit_options(cfg: dict, defaults: dict = FIT_DEFAULTS) -> dict:
    """The `fit` keyword arguments of a stage config (defaults for absent keys)."""
    return {k: cfg.get(k, defaults[k]) for k in FIT_DEFAULTS}


def check_options(cfg: dict, defaults: dict) -> dict:
    """Fill absent options with their defaults and check each; returns the completed config."""
    out = {**defaults, **cfg}
    for k in defaults:
        if out[k] is None or out[k] == "":
            out[k] = defaults[k]
    check_optimizer(out["optimizer"])
    out["flat_frac"] = _number("flat_frac", out["flat_frac"])
    check_schedule(out["schedule"], flat_frac=out["flat_frac"])
    out["weight_decay"] = _number("weight_decay", out["weight_decay"])
    if out["weight_decay"] < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {out['weight_decay']}")
    for key in ("label_smoothing", "head_dropout"):
        if key in defaults:
            out[key] = _number(key, out[key])
            if not 0.0 <= out[key] < 1.0:
                raise ConfigError(f"{key} must be in [0, 1), got {out[key]}")
    if "pretrain_on_val" in defaults:
        out["pretrain_on_val"] = _flag("pretrain_on_val", out["pretrain_on_val"])
    return out


def _number(name: str, value) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None


def _flag(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} must be true or false")
