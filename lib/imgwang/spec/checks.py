"""Checks of single parameter values: each returns the value as its type, or raises ConfigError with one line.

A stage parameter names its check in the stage spec (spec/__init__.py); messages use the upper-case name, as
the Make variable is spelled.
"""

from __future__ import annotations

import math

from ..core.errors import ConfigError

COMET_MODES = ("auto", "off", "offline", "online")
SPLITS = ("val", "dev")  # scoring sets of transfer and evaluate (imgwang.data.split)
OPTIMIZERS = ("adamw", "adam", "sgd", "ranger", "lars")  # built by imgwang.train.optim
SCHEDULES = ("onecycle", "flat_cos", "cosine", "constant")  # built by imgwang.train.schedule


SEED_MAX = 2**31 - 1  # every generator takes it, with room for the seeds counted up from it (repeats, replicates)


def positive_int(name: str, value) -> int:
    number = as_float(name.upper(), value)
    if isinstance(value, bool) or not math.isfinite(number) or number != int(number) or number <= 0:
        raise ConfigError(f"{name.upper()}={value!r} must be a positive whole number")
    return int(number)


def training_batch(name: str, value) -> int:
    """A batch that trains: BatchNorm (every CNN here, and the heads) needs two or more images to normalise over."""
    bs = positive_int(name, value)
    if bs < 2:
        raise ConfigError(f"{name.upper()}={bs} cannot train: BatchNorm layers need two or more images in a batch")
    return bs


def non_negative_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name.upper()}={value!r} must be a whole number")
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{name.upper()}={value!r} must be a whole number") from None
    if number < 0:
        raise ConfigError(f"{name.upper()}={value!r} must not be negative")
    return number


def seed(name: str, value) -> int:
    """A whole number from 0 to SEED_MAX."""
    number = non_negative_int(name, value)
    if number > SEED_MAX:
        raise ConfigError(f"{name.upper()}={value!r} must be at most {SEED_MAX} (what every random generator takes)")
    return number


def as_float(label: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{label}={value!r} is not a number") from None


def positive_float(name: str, value) -> float:
    number = as_float(name.upper(), value)
    if not number > 0:
        raise ConfigError(f"{name.upper()}={value!r} must be positive")
    return number


def one_of(label: str, value, choices, hint: str = ""):
    """`value` if it is one of `choices`, else one error line naming them (or `hint`)."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"unknown {label}={value!r}; use {hint or 'one of: ' + ', '.join(choices)}")
    return value


def comet_mode(name: str, value) -> str:
    return one_of(name.upper(), value, COMET_MODES)


def split_name(name: str, value) -> str:
    """val, dev, or empty (transfer: val; evaluate: the split transfer scored on)."""
    return one_of(name.upper(), value, ("", *SPLITS), "val (the leaderboard's scoring set) or dev (a held-out fifth "
                                                      "of train/, to tune without touching val/)")


def optimizer_name(name: str, value) -> str:
    return one_of(name, value, OPTIMIZERS)


def schedule_name(name: str, value) -> str:
    return one_of(name, value, SCHEDULES)


def fraction(name: str, value) -> float:
    """A number in [0, 1)."""
    number = as_float(name, value)
    if isinstance(value, bool) or not 0.0 <= number < 1.0:
        raise ConfigError(f"{name}={value!r} must be a number in [0, 1)")
    return number


def non_negative_float(name: str, value) -> float:
    number = as_float(name, value)
    if isinstance(value, bool) or not number >= 0:
        raise ConfigError(f"{name}={value!r} must be >= 0")
    return number


def flag(name: str, value) -> bool:
    """true/false, also as 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} must be true or false")


def _number(name: str, value) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name.upper()}={value!r} is not a number")
    return as_float(name.upper(), value)


def probability(name: str, value) -> float:
    p = _number(name, value)
    if not 0 <= p <= 1:
        raise ConfigError(f"{name.upper()}={value!r} is a probability: it must be in [0, 1]")
    return p


def crop_scale(name: str, value) -> list[float]:
    """A [min, max] range of crop area fractions, each in (0, 1]."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{name.upper()}={value!r} must be two numbers [min, max], e.g. -p {name} '[0.35, 1]'")
    lo, hi = (_number(name, v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"{name.upper()}={list(value)}: area fractions must be in (0, 1]")
    if not (0 < lo <= 1 and 0 < hi <= 1):
        raise ConfigError(f"{name.upper()}={list(value)}: area fractions must be in (0, 1]")
    if lo > hi:
        raise ConfigError(f"{name.upper()}={list(value)}: min must not exceed max")
    return [lo, hi]


def quarter_turns(name: str, value) -> list[int]:
    """Rotation angles in degrees, multiples of 90, as sorted distinct values in [0, 360) (-90 is 270)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError(f"{name.upper()}=[] needs at least one angle; [0] means no rotation")
    angles = []
    for v in values:
        a = _number(name, v)
        if not math.isfinite(a) or a != int(a) or int(a) % 90:
            raise ConfigError(f"{name.upper()}={list(values)}: angles must be multiples of 90 degrees, got {v}")
        angles.append(int(a) % 360)
    return sorted(set(angles))


def folds(name: str, value) -> int:
    """A number of cross-validation folds: a whole number of at least 2."""
    number = _number(name, value)
    if not math.isfinite(number) or number != int(number) or number < 2:
        raise ConfigError(f"{name.upper()}={value!r} must be a whole number of at least 2 (cross-validation folds)")
    return int(number)
