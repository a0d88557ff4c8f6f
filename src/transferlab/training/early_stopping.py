"""Early stopping on a validation metric, keeping the best weights to restore."""

from __future__ import annotations

import copy
import math

from torch import nn


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement; remember the best state.

    ``monitor`` is ``"val_loss"`` (lower is better) or ``"val_accuracy"`` (higher is better).
    """

    def __init__(self, patience: int = 10, monitor: str = "val_loss", min_delta: float = 0.0):
        if monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"monitor must be val_loss or val_accuracy, got {monitor!r}")
        self.patience = patience
        self.monitor = monitor
        self.min_delta = min_delta
        self.best = math.inf if monitor == "val_loss" else -math.inf
        self.best_epoch = -1
        self.best_state: dict | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.monitor == "val_loss":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        value = metrics[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "best_epoch", "bad_epochs", "best_state")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
