"""What a multi-label fine-tune adds to a single-label one: its loss and scoring (``engine.scoring``), the
probe's one-vs-rest regression folded into the linear head, and the test scores at the threshold tuned on the
validation images (``metrics.multilabel``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.labelsets import LabelSets
from ..engine.scoring import MultiLabelScoring
from ..errors import UserError
from ..metrics.multilabel import multilabel_scores, tune_threshold
from .config import FinetuneConfig

CONSTANT_LOGIT = 10.0  # a label every (or no) training image has: its probability near 1 (or 0)


def multilabel_scoring(label_sets: LabelSets | None, config: FinetuneConfig) -> MultiLabelScoring | None:
    """The loss and scoring of multi-label data (None: single-label), after checking the options that only mean
    something for one class per image."""
    if label_sets is None:
        return None
    refused = [name for name, on in (("--mixup", config.mixup), ("--cutmix", config.cutmix),
                                     ("--class-weights", config.class_weights), ("--calibrate", config.calibrate),
                                     ("--tta", config.tta > 1)) if on]
    if refused:
        raise UserError(f"{refused[0]} works on one class per image: multi-label data has one sigmoid per label")
    classes = len(label_sets.members)
    return MultiLabelScoring(label_sets.targets(range(classes)))


def fold_one_vs_rest(pipeline, out_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias of a linear layer computing the one-vs-rest regression's logit of every label from the
    unscaled features (the scaling folded in, as for the single-label probe)."""
    scaler, one_vs_rest = pipeline[0], pipeline[-1]
    weight = np.zeros((out_features, len(scaler.mean_)))
    bias = np.zeros(out_features)
    for label, estimator in enumerate(one_vs_rest.estimators_):
        if hasattr(estimator, "coef_"):
            weight[label] = estimator.coef_[0] / scaler.scale_
            bias[label] = estimator.intercept_[0] - weight[label] @ scaler.mean_
        else:  # sklearn's constant predictor: the label is on every training image, or on none
            bias[label] = CONSTANT_LOGIT if float(np.ravel(estimator.y_)[0]) > 0.5 else -CONSTANT_LOGIT
    return weight, bias


def multilabel_test_scores(scoring: MultiLabelScoring, val_logits: torch.Tensor, val_classes: list[int],
                           test_probabilities: np.ndarray, test_classes: list[int], names: list[str],
                           paths) -> dict[str, Any]:
    """The result's score fields: the threshold tuned on the validation images' probabilities, the test images
    scored at it."""
    val_truth = scoring.targets(torch.as_tensor(val_classes, dtype=torch.long)).numpy()
    threshold = tune_threshold(val_truth, torch.sigmoid(val_logits).numpy()) if len(val_classes) else 0.5
    truth = scoring.targets(torch.as_tensor(test_classes, dtype=torch.long)).numpy()
    return multilabel_scores(truth, test_probabilities, names, threshold, paths)
