"""Checks of single parameter values: each returns the value as its type, or raises ConfigError with one line.

A stage parameter names its check in the stage spec (stages/spec.py); messages use the upper-case name, as
the Make variable is spelled.
"""

from __future__ import annotations

from .errors import ConfigError

COMET_MODES = ("auto", "off", "offline", "online")
SPLITS = ("val", "dev")  # scoring sets of transfer and evaluate (imgwang.data.split)
OPTIMIZERS = ("adamw", "adam", "sgd", "ranger")  # built by imgwang.train.optim
SCHEDULES = ("onecycle", "flat_cos", "cosine", "constant")  # built by imgwang.train.schedule


def positive_int(name: str, value) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.upper()}={value!r} is not a number") from None
    if number != int(number) or number <= 0:
        raise ConfigError(f"{name.upper()}={value!r} must be a positive whole number")
    return int(number)


def non_negative_int(name: str, value) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{name.upper()}={value!r} must be a whole number") from None
    if number < 0:
        raise ConfigError(f"{name.upper()}={value!r} must not be negative")
    return number


def positive_float(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.upper()}={value!r} is not a number") from None
    if not number > 0:
        raise ConfigError(f"{name.upper()}={value!r} must be positive")
    return number


def comet_mode(name: str, value) -> str:
    if value not in COMET_MODES:
        raise ConfigError(f"unknown {name.upper()}={value!r}: use {', '.join(COMET_MODES)}")
    return value


def split_name(name: str, value) -> str:
    """val, dev, or empty (transfer: val; evaluate: the split transfer scored on)."""
    if value not in ("", *SPLITS):
        raise ConfigError(f"unknown {name.upper()}={value!r}: use val (the leaderboard's scoring set) or dev "
                          f"(a held-out fifth of train/, to tune without touching val/)")
    return value


def optimizer_name(name: str, value) -> str:
    if value not in OPTIMIZERS:
        raise ConfigError(f"unknown {name}={value!r}; use one of: {', '.join(OPTIMIZERS)}")
    return value


def schedule_name(name: str, value) -> str:
    if value not in SCHEDULES:
        raise ConfigError(f"unknown {name}={value!r}; use one of: {', '.join(SCHEDULES)}")
    return value


def fraction(name: str, value) -> float:
    """A number in [0, 1)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if isinstance(value, bool) or not 0.0 <= number < 1.0:
        raise ConfigError(f"{name}={value!r} must be a number in [0, 1)")
    return number


def non_negative_float(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
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
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.upper()}={value!r} is not a number") from None


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
        if a != int(a) or int(a) % 90:
            raise ConfigError(f"{name.upper()}={list(values)}: angles must be multiples of 90 degrees, got {v}")
        angles.append(int(a) % 360)
    return sorted(set(angles))


def folds(name: str, value) -> int:
    """A number of cross-validation folds: a whole number of at least 2."""
    number = _number(name, value)
    if number != int(number) or number < 2:
        raise ConfigError(f"{name.upper()}={value!r} must be a whole number of at least 2 (cross-validation folds)")
    return int(number)
