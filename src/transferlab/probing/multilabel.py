"""The multi-label probe's fit and scores: one-vs-rest logistic regression on multi-hot targets, its threshold
tuned on the validation features, scored by ``metrics.multilabel``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.labelsets import LabelSets
from ..metrics.multilabel import binary_cross_entropy, multilabel_scores, tune_threshold
from ..timing import Phases


def fit_multilabel_probe(head, xs: dict[str, np.ndarray], ys: dict[str, np.ndarray], label_sets: LabelSets,
                         test_paths: list[Path], phases: Phases) -> dict[str, Any]:
    """Fit ``head`` on the training features' multi-hot targets; the result's score fields, ``test_loss`` (mean
    binary cross-entropy) and ``train_accuracy_final`` (subset accuracy at the tuned threshold)."""
    targets = {name: label_sets.targets(y) for name, y in ys.items()}
    with phases.measure("head_fit"):
        head.fit(xs["train"], targets["train"])
        threshold = tune_threshold(targets["val"], head.predict_proba(xs["val"])) if len(ys["val"]) else 0.5
    with phases.measure("test_predict"):
        probabilities = head.predict_proba(xs["test"])
    train_predicted = head.predict_proba(xs["train"]) >= threshold
    return {
        "test_loss": binary_cross_entropy(targets["test"], probabilities),
        "train_accuracy_final": float(np.mean(np.all(train_predicted == (targets["train"] > 0.5), axis=1))),
        **multilabel_scores(targets["test"], probabilities, label_sets.names, threshold, test_paths),
    }
