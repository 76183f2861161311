"""Resolved parameters of a stage: the defaults that depend on the data, and checks of every value.

The notebooks' parameter cells leave data-dependent values empty (0 or ""); `resolve` fills them so that
`DATA=sample` runs in minutes on a laptop CPU while Imagewang gets the leaderboard protocol's settings.
The same function runs before any compute (bin/stage.py) and inside the notebook, so both agree.
"""

from __future__ import annotations

from .errors import ConfigError

DATA_NAMES = ("sample", "imagewang", "imagewang-320", "imagewang-full")
COMET_MODES = ("auto", "off", "offline", "online")

# (sample, real data) defaults per stage; the leaderboard protocol is 128 px, 5 fine-tune epochs.
_DEFAULTS = {
    "pretrain": {"arch": ("resnet18", "resnet34d"), "size": (64, 128), "epochs": (3, 20), "bs": (64, 128), "lr": (2e-3, 2e-3)},
    "transfer": {"arch": ("resnet18", "resnet34d"), "size": (64, 128), "epochs": (5, 5), "bs": (32, 64), "lr": (2e-3, 2e-3)},
    "evaluate": {"arch": ("resnet18", "resnet34d"), "size": (64, 128), "bs": (64, 128)},
    "review": {"arch": ("resnet18", "resnet34d"), "size": (64, 128), "bs": (64, 128)},
}
POSITIVE = ("size", "epochs", "bs", "runs", "knn_k", "probe_epochs", "n_show")


def resolve(stage: str, params: dict) -> dict:
    """Fill data-dependent defaults and validate; returns a new dict of plain Python values."""
    if stage not in _DEFAULTS:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(_DEFAULTS)}")
    cfg = dict(params)
    real = 0 if cfg.get("data", "imagewang") == "sample" else 1
    for key, pair in _DEFAULTS[stage].items():
        if cfg.get(key) in (None, "", 0, 0.0):
            cfg[key] = pair[real]
    for key in POSITIVE:
        if key in cfg:
            cfg[key] = positive_int(key, cfg[key])
    if "lr" in cfg and stage in ("pretrain", "transfer"):
        cfg["lr"] = positive_float("lr", cfg["lr"])
    if "knn_every" in cfg:
        cfg["knn_every"] = non_negative_int("knn_every", cfg["knn_every"])
    for key in ("knn_t", "head_lr_mult"):
        if key in cfg:
            cfg[key] = positive_float(key, cfg[key])
    if cfg.get("comet", "auto") not in COMET_MODES:
        raise ConfigError(f"unknown COMET={cfg['comet']!r}: use {', '.join(COMET_MODES)}")
    return cfg


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


def storage_size(size: int) -> int:
    """Side of the decode-once cache: a little above SIZE so random crops keep detail."""
    return int(round(size * 1.25))
