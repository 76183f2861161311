"""Checks of single parameter values: each returns the value as its type, or raises ConfigError with one line.

A stage parameter names its check in the stage spec (stages/spec.py); messages use the upper-case name, as
the Make variable is spelled.
"""

from __future__ import annotations

from .errors import ConfigError

COMET_MODES = ("auto", "off", "offline", "online")


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
