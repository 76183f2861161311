"""Stop when a monitored history value has not improved for `patience` epochs."""

from __future__ import annotations

import math

from ..core.errors import ConfigError


class Monitor:
    """Tracks the best value of one history key; shared by early stopping and best.pt."""

    def __init__(self, metric: str = "val_loss", mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        if min_delta < 0:
            raise ConfigError(f"min_delta must be >= 0, got {min_delta}")
        self.metric, self.mode, self.min_delta = metric, mode, min_delta
        self.best: float | None = None
        self.best_epoch = 0

    def value(self, row: dict) -> float:
        if self.metric not in row:
            raise ConfigError(f"cannot monitor {self.metric!r}: the history has {', '.join(sorted(row))}")
        return float(row[self.metric])

    def improved(self, row: dict) -> bool:
        """Update the best value from an epoch's history row; True if this epoch is the new best."""
        v = self.value(row)
        if math.isnan(v):
            return False
        better = (self.best is None or (v < self.best - self.min_delta if self.mode == "min"
                                         else v > self.best + self.min_delta))
        if better:
            self.best, self.best_epoch = v, int(row["epoch"])
        return better

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EarlyStop(Monitor):
    """`step(row)` returns True once `patience` epochs in a row brought no improvement beyond min_delta."""

    def __init__(self, metric: str = "val_loss", mode: str = "min", patience: int = 3, min_delta: float = 0.0):
        super().__init__(metric, mode, min_delta)
        if patience < 1:
            raise ConfigError(f"early-stop patience must be >= 1 epoch, got {patience}")
        self.patience = patience

    def step(self, row: dict) -> bool:
        self.improved(row)
        return int(row["epoch"]) - self.best_epoch >= self.patience

    def __repr__(self) -> str:
        return f"EarlyStop(metric={self.metric!r}, mode={self.mode!r}, patience={self.patience}, min_delta={self.min_delta})"
