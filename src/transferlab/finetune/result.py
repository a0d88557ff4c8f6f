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

    def legacy_phases(self) -> dict[str, float]:
        """Phases of a result stored before they were recorded: the prefix computed once (a frozen part only
        when the policy froze layers), the epochs, the rest of the training, and the test set."""
        phases = super().legacy_phases()
        prefix = "train_frozen_forward" if self.freeze != "none" else "train_decode"  # none: decoding only
        if self.prefix_cache_seconds:
            phases[prefix] = self.prefix_cache_seconds
        phases["train_network"] = self.seconds_per_epoch * self.epochs_run
        phases["train_other"] = self.training_seconds - phases["train_network"] - self.prefix_cache_seconds
        return phases

    def frozen_seconds(self) -> float | None:
        """The frozen layers' part: their outputs computed once (None when nothing frozen was run ahead)."""
        phases = self.phase_seconds()
        return super().frozen_seconds() if "train_frozen_forward" in phases else None
