"""Scores of a multi-label model: per-label and mean average precision, F1 at a tuned threshold, subset accuracy.

Every label is its own yes/no question (one sigmoid each), so a label is predicted when its
probability is over a threshold. The threshold is tuned on the validation set, as one number for
every label (the micro F1's best over a grid; 0.5 without a validation set), and kept with the
model so that predict uses it. Average precision needs no threshold: it ranks the images by
each label's probability (scikit-learn's ``average_precision_score``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

from ..stats import wilson_interval

DEFAULT_THRESHOLD = 0.5
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def tune_threshold(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold of the grid with the best micro F1 on these (validation) images; ties go to the one nearest
    0.5; 0.5 without images."""
    if len(truth) == 0:
        return DEFAULT_THRESHOLD
    scores = [f1_score(truth, probabilities >= t, average="micro", zero_division=0) for t in THRESHOLDS]
    best = max(scores)
    return float(min((t for t, s in zip(THRESHOLDS, scores) if s == best), key=lambda t: abs(t - 0.5)))


def predicted_labels(probabilities: np.ndarray, names: list[str], threshold: float) -> list[list[str]]:
    """Every image's labels over the threshold, most probable first."""
    return [[names[i] for i in np.argsort(-row, kind="stable") if row[i] >= threshold] for row in probabilities]


def binary_cross_entropy(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy over images and labels (the multi-label loss)."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))


def multilabel_scores(truth: np.ndarray, probabilities: np.ndarray, names: list[str], threshold: float,
                      paths: Sequence[Path] | None = None) -> dict[str, Any]:
    """A run's result fields for multi-label test images: ``accuracy`` is the subset accuracy (every label right),
    ``macro_f1`` the F1 at ``threshold`` averaged over labels; ``mean_average_precision`` over the labels that
    have a positive test image; per label its AP, F1 and test images (``label_scores``)."""
    truth = np.asarray(truth, dtype=np.float32)
    predicted = probabilities >= threshold
    exact = int(np.sum(np.all(predicted == (truth > 0.5), axis=1)))
    positive = truth.sum(axis=0)
    per_label = {}
    for i, name in enumerate(names):
        ap = float(average_precision_score(truth[:, i], probabilities[:, i])) if positive[i] > 0 else None
        per_label[name] = {"ap": ap, "f1": float(f1_score(truth[:, i], predicted[:, i], zero_division=0)),
                           "images": int(positive[i])}
    aps = [s["ap"] for s in per_label.values() if s["ap"] is not None]
    scores: dict[str, Any] = {
        "accuracy": exact / len(truth),
        "accuracy_interval": list(wilson_interval(exact, len(truth))),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "mean_average_precision": float(np.mean(aps)) if aps else None,
        "label_scores": per_label,
        "threshold": float(threshold),
        "confusion_matrix": [],
    }
    if paths is not None:
        true_names = predicted_labels(truth, names, 0.5)
        scores["predictions"] = [
            {"path": str(p), "true": ";".join(sorted(t)), "predicted": ";".join(sorted(q))}
            for p, t, q in zip(paths, true_names, predicted_labels(probabilities, names, threshold))]
    return scores
