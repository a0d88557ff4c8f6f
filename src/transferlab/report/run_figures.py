"""One run's figures for the trackers (MLflow, TensorBoard, W&B): the report's learning curves and confusion matrix."""

from __future__ import annotations

from typing import Any

from .confusion import confusion_figure
from .curves import learning_curves
from .records import RunRecord


def run_figures(result: Any, run_name: str) -> dict[str, Any]:
    """``{name: matplotlib Figure}``: ``learning_curves`` (runs with epochs) and ``confusion_matrix``, drawn
    as the report draws them."""
    record = RunRecord(id=run_name, method=run_name, kind="finetune" if hasattr(result, "freeze") else "probe",
                       backbone=result.backbone, axes={}, status="done", result=result)
    figures = {"learning_curves": learning_curves(record)}
    if result.confusion_matrix:
        figures["confusion_matrix"] = confusion_figure(result.confusion_matrix, result.classes,
                                                       f"{result.backbone}: accuracy {result.accuracy_text()}")
    return {name: figure for name, figure in figures.items() if figure is not None}
