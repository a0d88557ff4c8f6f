"""What a fine-tuning run measured."""

from __future__ import annotations

from dataclasses import dataclass

from ..results import RunResult


@dataclass(kw_only=True)
class FinetuneResult(RunResult):
    """A fine-tuning run's figures; ``history`` has one entry per epoch:
    epoch, stage, lr (head), backbone_lr (top trainable unit), train_loss, train_accuracy, val_loss,
    val_accuracy, seconds."""

    freeze: str
    recipe: str = ""  # the recipe and the options given over it, e.g. "default (two-stage 10 + 10 ...); given: lr"
    epochs_run: int
    seconds_per_epoch: float
    training_seconds: float
    trainable_parameters: int
    frozen_parameters: int
    total_parameters: int
    backbone_layers: int | None  # freeze units of the backbone (`transferlab layers`)
    frozen_layers: int  # units frozen at the end of training
    best_epoch: int
    stage2_start_epoch: int | None  # first epoch of stage 2 in two-stage runs (1-based)
    prefix_cache_used: bool
    model_path: str
    prefix_cache_seconds: float = 0.0  # computing the frozen layers' outputs once (part of training_seconds)
