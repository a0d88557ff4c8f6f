"""A cross-validated run: the same config on each of K stratified folds, and what the folds say together.

``run_folds(config, run_probe)`` runs fold 0..K-1 (``data.folds`` makes the splits);
features come from the feature cache after the first fold, so a probe extracts each
image once. The record reports each fold's accuracy (with its Wilson interval), the mean
over folds with its t-interval, and the pooled accuracy: every image tested exactly once.
Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .results import RunResult
from .stats import ACCURACY, MeanInterval, interval_text, mean_interval, wilson_interval


@dataclass
class CrossValidation:
    """The K results of one config, fold by fold."""

    folds: list[RunResult]

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.folds]

    def summary(self) -> MeanInterval:
        """Mean ± std of the fold accuracies and the t-interval of the mean."""
        return mean_interval(self.accuracies, bounds=ACCURACY)

    @property
    def test_images(self) -> int:
        return sum(r.test_images for r in self.folds)

    def pooled(self) -> tuple[float, tuple[float, float]]:
        """Accuracy over all images (each tested once, in its fold) and its Wilson interval."""
        correct = sum(r.correct_count for r in self.folds)
        return correct / self.test_images, wilson_interval(correct, self.test_images)

    def to_dict(self, predictions: bool = False) -> dict[str, Any]:
        first = self.folds[0]
        summary = self.summary()
        pooled, pooled_interval = self.pooled()
        config = {k: v for k, v in first.config.items() if k != "fold"}
        folds = []
        for index, r in enumerate(self.folds):
            entry = {"fold": r.config.get("fold", index), "accuracy": r.accuracy,
                     "accuracy_interval": list(r.interval()), "macro_f1": r.macro_f1,
                     "train_images": r.train_images, "val_images": r.val_images, "test_images": r.test_images,
                     "evaluated_on": r.evaluated_on}
            if predictions:
                entry["predictions"] = r.predictions
            folds.append(entry)
        return {
            "backbone": first.backbone, "timm_name": first.timm_name, "head": first.head, "data": first.data,
            "classes": first.classes, "folds": folds, "mean": summary.mean, "std": summary.std,
            "interval": [summary.low, summary.high], "pooled_accuracy": pooled,
            "pooled_interval": list(pooled_interval),
            "test_images": self.test_images, "notes": first.notes, "config": config, "runtime": first.runtime,
        }

    def table_rows(self) -> list[tuple[str, object]]:
        summary = self.summary()
        pooled, pooled_interval = self.pooled()
        rows: list[tuple[str, object]] = [("data", self.folds[0].data), ("folds", len(self.folds))]
        for index, r in enumerate(self.folds):
            rows.append((f"fold {r.config.get('fold', index)} accuracy ({r.test_images} images)", r.accuracy_text()))
        rows += [
            ("mean ± std over folds", f"{summary.mean:.4f} ± {summary.std:.4f}"),
            ("95% interval of the mean (t)", interval_text(summary.low, summary.high)),
            (f"pooled accuracy ({self.test_images} images)", f"{pooled:.4f} {interval_text(*pooled_interval)}"),
        ]
        return rows


def run_folds(config: Any, run_one: Callable[..., RunResult], progress: Callable | None = None) -> CrossValidation:
    """``run_one(config with fold=i, progress)`` for every fold i of ``config.folds``."""
    if not config.folds:
        raise ValueError("run_folds needs a config with folds")
    results = []
    for fold in range(config.folds):
        fold_config = replace(config, fold=fold)
        if getattr(config, "output", None):  # a fine-tuned model per fold, side by side
            fold_config = replace(fold_config, output=str(Path(config.output) / f"fold-{fold}"))
        results.append(run_one(fold_config, progress))
    return CrossValidation(results)


def to_json(cross_validation: CrossValidation, predictions: bool = False) -> str:
    import json

    return json.dumps(cross_validation.to_dict(predictions), indent=2, default=str)
