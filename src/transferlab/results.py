"""Result records and how they are shown: a table for people, plain JSON for programs."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(kw_only=True)
class RunResult:
    """What every run measured on its test images: the fields probe and fine-tuning results share.

    Times are wall-clock seconds on this machine; ``runtime`` says where and how it ran
    (device, precision, memory format, processes).
    """

    backbone: str
    timm_name: str
    head: str
    data: str
    evaluated_on: str
    classes: list[str]
    train_images: int
    val_images: int
    test_images: int
    accuracy: float
    accuracy_interval: list[float] = field(default_factory=list)  # 95% Wilson interval (stats.wilson_interval)
    macro_f1: float
    feature_dim: int
    inference_ms_per_image: float
    test_loss: float | None = None  # mean cross-entropy on the test images (None: the head gives no probabilities)
    test_seconds: float | None = None  # predicting the whole test set, decoding included (the test phases' sum)
    train_accuracy_final: float | None = None  # last epoch's (trained heads, fine-tuning), else of the fitted head
    val_accuracy_final: float | None = None  # last epoch's validation accuracy (None: no validation set used)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    ece: float | None = None  # expected calibration error of the test probabilities (15 bins; after --calibrate)
    ece_uncalibrated: float | None = None  # the same before temperature scaling (None: not calibrated)
    calibration_temperature: float | None = None  # the T --calibrate fitted on the validation logits
    reliability: dict = field(default_factory=dict)  # per confidence bin: confidence, accuracy, count (calibration)
    tta: int = 1  # views averaged for tta_accuracy
    tta_accuracy: float | None = None  # test accuracy with test-time augmentation (None: tta 1)
    predictions: list[dict] = field(default_factory=list)  # per test image: path, true, predicted
    # multi-label runs (``metrics.multilabel``): ``accuracy`` is then the subset accuracy (every label of an image
    # right), ``macro_f1`` the F1 at ``threshold`` averaged over labels, ``classes`` the labels
    threshold: float | None = None  # a label is predicted over this probability (tuned on validation)
    micro_f1: float | None = None
    mean_average_precision: float | None = None  # over the labels with a positive test image
    label_scores: dict = field(default_factory=dict)  # per label: ap, f1 (at threshold), images (positive, test)
    history: list[dict] = field(default_factory=list)  # per epoch, for trained heads and fine-tuning
    unreadable_count: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)  # wall-clock seconds per named phase (``timing``)

    def phase_seconds(self) -> dict[str, float]:
        """The run's phases; for a result stored before phases were recorded, rebuilt from its totals."""
        return self.phases or self.legacy_phases()

    def legacy_phases(self) -> dict[str, float]:
        return {"test_other": self.test_seconds} if self.test_seconds is not None else {}

    def training_total(self) -> float | None:
        """Seconds of the whole training (the training phases' sum)."""
        from .timing import TRAINING_PHASES, phase_sum

        return phase_sum(self.phase_seconds(), TRAINING_PHASES)

    def frozen_seconds(self) -> float | None:
        """The frozen backbone's part of the training (None: the run has no frozen part)."""
        from .timing import FROZEN_PHASES, phase_sum

        return phase_sum(self.phase_seconds(), FROZEN_PHASES)

    def test_total(self) -> float | None:
        """Seconds of predicting the whole test set (the test phases' sum)."""
        from .timing import TEST_PHASES, phase_sum

        return phase_sum(self.phase_seconds(), TEST_PHASES)

    def frozen_from_cache(self) -> bool:
        """Whether the training's frozen features were all read from the feature cache."""
        return False

    def test_from_cache(self) -> bool:
        """Whether the test images' features were all read from the feature cache (no image was run)."""
        return False

    def training_text(self) -> str:
        """``4.17 s (frozen part 3.90 s)``, ``(frozen features from cache)``, or the total alone without a
        frozen part."""
        total, frozen = self.training_total(), self.frozen_seconds()
        if total is None:
            return "n/a"
        if self.frozen_from_cache():
            return f"{total:.2f} s (frozen features from cache)"
        return f"{total:.2f} s" + (f" (frozen part {frozen:.2f} s)" if frozen is not None else "")

    def test_text(self) -> str:
        """``1.53`` seconds, or ``from cache`` when no test image ran through the backbone."""
        total = self.test_total()
        if total is None:
            return "n/a"
        return "from cache" if self.test_from_cache() else f"{total:.2f}"

    @property
    def runs_on(self) -> str:
        """Where it ran, for people: ``cpu, bf16`` or ``cuda:0, bf16, 2 processes``."""
        if not self.runtime:
            return "?"
        parts = [self.runtime.get("device", "?"), self.runtime.get("precision", "?")]
        if self.runtime.get("compile"):
            parts.append("compiled")
        if self.runtime.get("world_size", 1) > 1:
            parts.append(f"{self.runtime['world_size']} processes")
        return ", ".join(parts)

    @property
    def correct_count(self) -> int:
        """Test images predicted right (from the predictions when stored, else from the accuracy)."""
        if self.predictions:
            return sum(1 for p in self.predictions if p.get("true") == p.get("predicted"))
        return int(round(self.accuracy * self.test_images))

    def interval(self) -> tuple[float, float]:
        """The accuracy's 95% Wilson interval (computed for results stored before intervals were)."""
        if len(self.accuracy_interval) == 2:
            return (float(self.accuracy_interval[0]), float(self.accuracy_interval[1]))
        from .stats import wilson_interval

        return wilson_interval(self.correct_count, self.test_images)

    def accuracy_text(self, digits: int = 4) -> str:
        """``0.8235 [0.741, 0.885]``: the accuracy with its 95% interval."""
        from .stats import interval_text

        return f"{self.accuracy:.{digits}f} {interval_text(*self.interval())}".rstrip()

    @property
    def multi_label(self) -> bool:
        return self.threshold is not None

    def accuracy_row(self) -> tuple[str, str]:
        """The accuracy with its interval, named for what it is (multi-label: subset accuracy)."""
        name = "subset accuracy [95% interval]" if self.multi_label else "accuracy [95% interval]"
        return name, self.accuracy_text()

    def multilabel_rows(self) -> list[tuple[str, object]]:
        """The multi-label figures for the table: mAP, F1 at the threshold, each label's AP and F1 (none for a
        single-label run)."""
        if not self.multi_label:
            return []
        mean_ap = self.mean_average_precision
        rows: list[tuple[str, object]] = [
            ("mean average precision", mean_ap if mean_ap is not None else "n/a"),
            (f"F1 at threshold {self.threshold:.2f} (macro / micro)", pair_text(self.macro_f1, self.micro_f1)),
        ]
        for name, scores in self.label_scores.items():
            ap = "-" if scores.get("ap") is None else f"{scores['ap']:.3f}"
            rows.append((f"  {name}: AP / F1", f"{ap} / {scores['f1']:.3f} ({scores['images']} test images)"))
        return rows

    def calibration_text(self) -> str:
        """``0.031 (0.118 before T = 1.62)``: the test ECE, and before temperature scaling when calibrated."""
        if self.ece is None:
            return "n/a"
        if self.ece_uncalibrated is None:
            return f"{self.ece:.3f}"
        return f"{self.ece:.3f} ({self.ece_uncalibrated:.3f} before T = {self.calibration_temperature:.3g})"

    def tta_text(self) -> str:
        """``0.9600 with 5 views (plain 0.9400, gain +0.0200)``, or ``-`` without test-time augmentation."""
        if self.tta_accuracy is None:
            return "-"
        return (f"{self.tta_accuracy:.4f} with {self.tta} views (plain {self.accuracy:.4f}, "
                f"gain {self.tta_accuracy - self.accuracy:+.4f})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """The record back from its JSON form (fields it does not know are ignored, missing ones default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def pair_text(first: float | None, second: float | None) -> str:
    """``0.950 / 0.833`` (``-`` for a missing one)."""
    return " / ".join("-" if v is None else f"{v:.3f}" for v in (first, second))


def to_json(record: Any, **exclude: bool) -> str:
    data = dataclasses.asdict(record)
    for key, drop in exclude.items():
        if drop:
            data.pop(key, None)
    return json.dumps(data, indent=2, default=str)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: list[tuple[str, Any]], console: Console | None = None) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, _fmt(value))
    (console or Console(emoji=False, width=None if sys.stdout.isatty() else 120)).print(table)
