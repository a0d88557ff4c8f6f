"""What happens around the epochs of ``Learner.fit``: early stopping, checkpoints, progress, per-epoch hooks, EMA.

Each is a ``Callback``; ``fit`` calls them in the order given, so early stopping
(which may set ``state.stop``) comes before the checkpoint that records it. A
callback with a ``key`` has state that a checkpoint keeps and a resumed fit restores.
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
    key: str | None = None  # the name its ``state_dict()`` has in a checkpoint (None: nothing to keep)

    def on_fit_start(self, state: "FitState") -> None: ...
    def on_step_end(self, state: "FitState") -> None: ...  # after each optimizer step, its gradients still there
    def on_batch_end(self, state: "FitState", step: int, steps: int) -> None: ...
    def on_validate_start(self, state: "FitState") -> None: ...
    def on_epoch_end(self, state: "FitState", record: dict) -> None: ...
    def after_epoch(self, state: "FitState") -> None: ...  # after every callback's on_epoch_end
    def on_fit_end(self, state: "FitState") -> None: ...


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without improvement; restore the best weights when the fit ends.

    ``monitor`` is ``"val_loss"`` (lower is better), ``"val_accuracy"`` (higher is
    better) or ``"none"`` (never stop, keep the last weights). Each fit (stage) starts it afresh.

    Patience counts epochs since this fit's own best, and what is kept is the best of the fit and of the record
    it started from (``start_from``): a stage whose heavy augmentation first drops validation accuracy below
    the stage before's and then climbs back above it (digits under RandAugment: 0.81 -> 0.56, above 0.81 only
    at its 10th epoch) runs while it still climbs, not only while it beats the stage before.
    """

    key = "stopper"

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0):
        if monitor not in ("val_loss", "val_accuracy", "none"):
            raise UserError(f"early stopping watches val_loss, val_accuracy or none, got {monitor!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf if monitor == "val_loss" else -math.inf
        self.best_epoch = -1  # 0-based epoch of this fit whose weights are kept
        self.best_state: dict | None = None
        self.fit_best = self.best  # this fit's own best, which patience counts from
        self.bad_epochs = 0

    def start_from(self, record: dict, model: torch.nn.Module) -> None:
        """Begin with ``record``'s score and ``model``'s current weights as the best so far (the stage before's
        end): a later stage then keeps them unless it beats them on validation by more than ``baseline_margin``
        (validation accuracy; a margin does not apply to the loss)."""
        if self.monitor in record:
            margin = self.baseline_margin if self.monitor == "val_accuracy" else 0.0
            self.best, self.best_epoch = record[self.monitor] + margin, -1
            self.best_state = copy.deepcopy(model.state_dict())

    def improved(self, value: float, over: float | None = None) -> bool:
        """Whether ``value`` beats ``over`` (default: the best kept so far) by more than ``min_delta``."""
        over = self.best if over is None else over
        if self.monitor == "val_loss":
            return value < over - self.min_delta
        return value > over + self.min_delta

    baseline: dict | None = None  # a record to start from (``start_from``) at the next fit's start
    baseline_margin: float = 0.0  # what a later epoch's accuracy must beat the baseline's by to be kept

    def on_fit_start(self, state: "FitState") -> None:
        if not hasattr(self, "_fresh"):
            self._fresh = copy.deepcopy(self.state_dict())  # as built: what every later stage starts from
        else:
            self.load_state_dict(copy.deepcopy(self._fresh))
        if self.baseline is not None:
            self.start_from(self.baseline, state.model)

    def on_epoch_end(self, state: "FitState", record: dict) -> None:
        if self.monitor == "none" or self.monitor not in record:
            self.best_epoch = state.epoch
            return
        value = record[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch = value, state.epoch
            self.best_state = copy.deepcopy(state.model.state_dict())
        if self.improved(value, self.fit_best):
            self.fit_best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                state.stop = True

    def on_fit_end(self, state: "FitState") -> None:
        if self.best_state is not None:
            state.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "best_epoch", "fit_best", "bad_epochs", "best_state")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Checkpoint(Callback):
    """After every epoch, everything needed to continue: written atomically, read without unpickling code.

    ``extra()`` adds the caller's state (stage index, timings); each keyed callback's state goes in under its key.
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
            **{c.key: c.state_dict() for c in state.callbacks if c.key},  # type: ignore[attr-defined]
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


class EMA(Callback):
    """An exponential moving average of the weights (timm's ``ModelEmaV3``), updated after every optimizer step.

    The average is what is validated, what early stopping keeps, what a checkpoint and the saved model hold: at
    each epoch's end the model takes the averaged weights, and gets its raw ones back if training goes on. Each
    fit (stage) starts the average from the weights it begins with.
    """

    key = "ema"

    def __init__(self, decay: float, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.ema = None
        self.raw: dict | None = None  # the raw weights while the model holds the average

    def on_fit_start(self, state: "FitState") -> None:
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(state.model, decay=self.decay, use_warmup=self.warmup)
        self.raw = None
        self.state = state

    def on_step_end(self, state: "FitState") -> None:
        self.ema.update(state.model)

    def on_validate_start(self, state: "FitState") -> None:
        self.raw = copy.deepcopy(state.model.state_dict())
        state.model.load_state_dict(self.ema.module.state_dict())

    def after_epoch(self, state: "FitState") -> None:
        if not state.stop and state.epoch < state.epochs - 1 and self.raw is not None:
            state.model.load_state_dict(self.raw)  # training goes on from the raw weights
            self.raw = None

    def state_dict(self) -> dict:
        return {"ema": self.ema.module.state_dict() if self.ema is not None else None, "raw": self.raw}

    def load_state_dict(self, state: dict) -> None:
        if state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.raw = state.get("raw")
        if self.raw is not None and self.state.epoch < self.state.epochs - 1:  # a resumed stage goes on: raw weights
            self.state.model.load_state_dict(self.raw)
            self.raw = None


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
