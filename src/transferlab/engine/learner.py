"""The owner of a training run: model, runtime, loss, optimizer factory, data and callbacks in one object.

fastai's ``Learner(dls, model, loss_func, opt_func, cbs)`` and Lightning's ``Trainer`` have this shape: what
stays the same over a run is set once; ``fit(epochs, stage)`` takes only what changes. A *stage* is any object
with a ``name`` (a plain string will do) and optionally a ``seed``; the optimizer factory gets it, so a stage
record can carry its own rates and optimizer. The data (``train``/``val``) are sources from
``engine.inputs``: each knows where its batches enter the model (a cached frozen prefix's outputs enter past
it), so the loop never does.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import loop
from .callbacks import Callback
from .loop import FitState, LossFn, Mix, epoch_random, epoch_seed, group_lrs, process_batch_size
from .runtime import Runtime

OptimizerFactory = Callable[[nn.Module, Any], torch.optim.Optimizer]  # (model, stage) -> optimizer
ScheduleFactory = Callable[[torch.optim.Optimizer, int, int], Any]  # (optimizer, steps per epoch, epochs) -> schedule
Sampler = Callable[[int, int, int], list[int]]  # (rows, seed, epoch) -> this process's rows of the epoch


def stage_name(stage: Any) -> str:
    return stage if isinstance(stage, str) else stage.name


@dataclass
class Learner:
    """One run's model and everything it trains with; ``fit`` trains it for a stage.

    ``batch_size`` is the global batch (split over the processes); ``accumulate`` N sums the gradients of N
    batches before each optimizer step (an N-times larger batch in memory of one); ``sampler`` draws an epoch's
    rows (default: the runtime's seeded permutation, the same for every process count). ``history`` gathers
    every fit's epoch records. ``scoring`` (``engine.scoring``): how the epochs' loss and accuracy are measured
    (None: cross-entropy and the arg-max class; multi-label: binary cross-entropy and subset accuracy).
    """

    model: nn.Module
    runtime: Runtime
    loss_fn: LossFn
    opt_func: OptimizerFactory
    train: Any = None
    val: Any = None
    batch_size: int = 32
    seed: int = 0
    callbacks: list[Callback] = field(default_factory=list)
    mix: Mix | None = None
    schedule_func: ScheduleFactory | None = None
    accumulate: int = 1
    sampler: Sampler | None = None
    history: list[dict] = field(default_factory=list)
    scoring: Any = None

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of ``train``."""
        return max(1, -(-len(self.train) // (self.batch_size * self.accumulate)))

    def fit(self, epochs: int, stage: Any = "train", first_epoch: int = 0, resumed: dict | None = None) -> FitState:
        """Train for ``epochs`` epochs of ``stage`` (from ``first_epoch``; ``resumed``: a checkpoint of this stage to
        go on from), validating on ``val`` after each. The optimizer and schedule are built for the stage.

        A loss that is not finite stops the run with a UserError: no model is saved from it. Each epoch's record
        has ``samples``: a digest of which samples each step trained on, the same for any process count.
        """
        name, seed = stage_name(stage), getattr(stage, "seed", self.seed)
        runtime, model, train, val = self.runtime, self.model, self.train, self.val
        local_batch = process_batch_size(self.batch_size, runtime.world_size)
        optimizer = self.opt_func(model, stage)
        schedule = self.schedule_func(optimizer, self.steps_per_epoch(), epochs) if self.schedule_func else None
        callbacks = list(self.callbacks)
        state = FitState(model, optimizer, schedule, name, epochs, self.history,
                         epoch=first_epoch - 1, callbacks=callbacks)  # a resumed fit counts from where it goes on
        trained = runtime.parallel(model)  # after the caller froze what it freezes: DDP reduces the rest
        forward = runtime.compiled(train.forward)
        for callback in callbacks:
            callback.on_fit_start(state)
        if resumed:
            optimizer.load_state_dict(resumed["optimizer"])
            if schedule is not None and resumed.get("schedule") is not None:
                schedule.load_state_dict(resumed["schedule"])
            for callback in callbacks:
                if callback.key and callback.key in resumed:
                    callback.load_state_dict(resumed[callback.key])  # type: ignore[attr-defined]
        scaler = runtime.grad_scaler()
        for epoch in range(first_epoch, epochs):
            started = time.perf_counter()
            seed_here = epoch_seed(seed, epoch)
            record: dict[str, Any] = {"epoch": len(state.history) + 1, "stage": name, **group_lrs(optimizer)}
            order = self.epoch_order(len(train), seed, epoch)
            with epoch_random(seed_here, runtime):  # dropout, augmentation, mixup: the same on a resumed run
                record.update(loop._train_epoch(state, trained, forward, self.loss_fn, train, order, runtime, scaler,
                                                local_batch, seed_here, callbacks, self.mix, self.accumulate,
                                                self.scoring))
            runtime.sync_buffers(model)  # one set of BatchNorm statistics for validation and checkpoints
            for callback in callbacks:
                callback.on_validate_start(state)
            if val is not None and len(val):
                scores = loop.evaluate(model, val, runtime, local_batch, scoring=self.scoring)
                record.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
            record["seconds"] = time.perf_counter() - started
            state.history.append(record)
            state.epoch = epoch
            for callback in callbacks:
                callback.on_epoch_end(state, record)
            for callback in callbacks:
                callback.after_epoch(state)
            if state.stop:
                break
        for callback in callbacks:
            callback.on_fit_end(state)
        if trained is not model:
            del trained
            gc.collect()  # the DDP wrapper's gradient hooks go now, before the next stage wraps the model again
        return state

    def evaluate(self, inputs: Any = None) -> dict[str, float]:
        """Mean loss and accuracy of the model on ``inputs`` (default: ``val``)."""
        inputs = self.val if inputs is None else inputs
        return loop.evaluate(self.model, inputs, self.runtime,
                             process_batch_size(self.batch_size, self.runtime.world_size), scoring=self.scoring)

    def predict(self, batches) -> loop.Collected:
        """The model's outputs on image batches (``data.image_batches``), collected in order."""
        return loop.collect(self.model, batches, self.runtime)

    def epoch_order(self, n: int, seed: int, epoch: int) -> list[int]:
        """This process's rows of epoch ``epoch``, from the sampler's own generator (not the global one)."""
        if self.sampler is not None:
            return self.sampler(n, epoch_seed(seed, 0), epoch)
        return self.runtime.train_order(n, epoch_seed(seed, 0), epoch)

    def lr_find(self, stage: Any = "train", start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
                diverge: float = 4.0) -> "LRSweep":
        """fastai's learning-rate range test: train from ``start_lr`` to ``end_lr`` over ``steps`` optimizer steps,
        the rate rising exponentially (every group of the stage's optimizer keeps its share of the top rate), until
        the smoothed loss passes ``diverge`` times its best. The model's weights are restored afterwards."""
        from .lr_find import sweep

        return sweep(self, stage, start_lr, end_lr, steps, diverge)


@dataclass
class LRSweep:
    """The rates tried and the smoothed training loss at each; ``suggestion`` fastai's valley, ``steepest`` the rate
    of the steepest descent."""

    lrs: list[float]
    losses: list[float]
    suggestion: float | None
    steepest: float | None = None

    def plot(self, path, title: str = "") -> None:
        """The loss against the rate (log scale), the suggestion marked: a PNG at ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(self.lrs, self.losses)
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss (smoothed)")
        if self.suggestion is not None:
            index = int(np.argmin([abs(math.log(lr / self.suggestion)) for lr in self.lrs]))
            axes.plot([self.suggestion], [self.losses[index]], "ro", label=f"suggested {self.suggestion:.2g}")
            axes.legend()
        if title:
            axes.set_title(title)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
