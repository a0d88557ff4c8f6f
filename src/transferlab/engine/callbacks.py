"""What happens around the epochs of ``fit``: early stopping, checkpoints, progress, per-epoch hooks.

Each is a ``Callback``; ``fit`` calls them in the order given, so early stopping
(which may set ``state.stop``) comes before the checkpoint that records it.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import UserError
from ..storage import atomic_path

if TYPE_CHECKING:
    from .loop import FitState

CHECKPOINT_NAME = "checkpoint.pt"


class Callback:
    def on_fit_start(self, state: "FitState") -> None: ...
    def on_batch_end(self, state: "FitState", step: int, steps: int) -> None: ...
    def on_epoch_end(self, state: "FitState", record: dict) -> None: ...
    def on_fit_end(self, state: "FitState") -> None: ...


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without improvement; restore the best weights when the fit ends.

    ``monitor`` is ``"val_loss"`` (lower is better), ``"val_accuracy"`` (higher is
    better) or ``"none"`` (never stop, keep the last weights).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0):
        if monitor not in ("val_loss", "val_accuracy", "none"):
            raise UserError(f"early stopping watches val_loss, val_accuracy or none, got {monitor!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf if monitor == "val_loss" else -math.inf
        self.best_epoch = -1  # 0-based epoch of this fit whose weights are kept
        self.best_state: dict | None = None
        self.bad_epochs = 0

    def start_from(self, record: dict, model: torch.nn.Module) -> None:
        """Begin with ``record``'s score and ``model``'s current weights as the best so far (the stage before's
        end): a later stage then keeps them unless it beats them on validation."""
        if self.monitor in record:
            self.best, self.best_epoch = record[self.monitor], -1
            self.best_state = copy.deepcopy(model.state_dict())

    def improved(self, value: float) -> bool:
        if self.monitor == "val_loss":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, state: "FitState", record: dict) -> None:
        if self.monitor == "none" or self.monitor not in record:
            self.best_epoch = state.epoch
            return
        if self.improved(record[self.monitor]):
            self.best, self.best_epoch, self.bad_epochs = record[self.monitor], state.epoch, 0
            self.best_state = copy.deepcopy(state.model.state_dict())
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                state.stop = True

    def on_fit_end(self, state: "FitState") -> None:
        if self.best_state is not None:
            state.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "best_epoch", "bad_epochs", "best_state")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Checkpoint(Callback):
    """After every epoch, everything needed to continue: written atomically, read without unpickling code.

    ``extra()`` adds the caller's state (stage index, the early stopper, timings).
    """

    def __init__(self, folder: Path, run_id: str, extra: Callable[["FitState"], dict[str, Any]]):
        self.folder = Path(folder)
        self.run_id = run_id
        self.extra = extra

    def on_epoch_end(self, state: "FitState", record: dict) -> None:
        save_checkpoint(self.folder, {
            "config_id": self.run_id, "epoch": state.epoch,
            "stage_done": state.stop or state.epoch == state.epochs - 1,
            "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "schedule": state.schedule.state_dict() if state.schedule is not None else None,
            "history": state.history, **self.extra(state),
        })


class EpochHook(Callback):
    """Calls ``hook(record)`` after each epoch (the CLI prints a line per epoch with it)."""

    def __init__(self, hook: Callable[[dict], None]):
        self.hook = hook

    def on_epoch_end(self, state: "FitState", record: dict) -> None:
        self.hook(record)


class BatchProgress(Callback):
    """Reports ``(label, step, steps)`` after each batch, the label naming the stage and epoch."""

    def __init__(self, progress: Callable[[str, int, int], None]):
        self.progress = progress

    def on_batch_end(self, state: "FitState", step: int, steps: int) -> None:
        self.progress(f"{state.stage} epoch {state.epoch + 2}/{state.epochs}", step, steps)


def save_checkpoint(folder: Path, state: dict) -> None:
    with atomic_path(Path(folder) / CHECKPOINT_NAME) as tmp:
        torch.save(state, tmp)


def load_checkpoint(folder: Path, run_id: str) -> dict | None:
    path = Path(folder) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(f"cannot read checkpoint {path}: delete it to start again") from None
    if not isinstance(state, dict) or state.get("config_id") != run_id:
        raise UserError(f"checkpoint {path} belongs to a run with other settings: use another --output "
                        "or drop --resume")
    return state


def remove_checkpoint(folder: Path) -> None:
    (Path(folder) / CHECKPOINT_NAME).unlink(missing_ok=True)


DEFAULT_PATIENCE = 10


def early_stopping_of(monitor: str, patience: int | None, small_validation: str | None) -> tuple[str, int, str | None]:
    """(monitor, patience, warning) early stopping runs with: off by default on a validation set too small to
    stop on (it would follow noise); an explicit patience keeps it on, with the warning."""
    if small_validation is None or monitor == "none":
        return monitor, patience or DEFAULT_PATIENCE, None
    if patience is not None:
        return monitor, patience, f"{small_validation}; early stopping stays on (patience {patience} was given)"
    return "none", DEFAULT_PATIENCE, (f"{small_validation}; early stopping is off (give patience to turn it on, or "
                                      "raise val_per_class)")
