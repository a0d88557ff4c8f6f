"""The probe head's calibration: the test ECE of its probabilities, and with ``calibrate`` temperature scaling.

A head's probabilities become logits as their logarithms (softmax(log p) = p), so one
temperature, fitted on the validation images' log-probabilities, rescales any head that gives
probabilities (logreg, the mlp and linear heads) as it rescales a network's logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..calibration import expected_calibration_error, fit_temperature, reliability_bins
from ..errors import UserError


def class_log_probabilities(head, features: np.ndarray, classes: int) -> np.ndarray | None:
    """log p over every class (classes the head never saw get probability 0), or None: the head gives none."""
    try:
        probabilities = head.predict_proba(features)
    except AttributeError:  # svm, or a pipeline whose last step has no predict_proba
        return None
    full = np.zeros((len(features), classes))
    full[:, np.asarray(head.classes_, dtype=int)] = probabilities
    return np.log(np.clip(full, 1e-12, None))


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def probe_calibration(head, xs: dict[str, np.ndarray], ys: dict[str, np.ndarray], classes: int,
                      calibrate: bool) -> dict[str, Any]:
    """The result's ``ece`` and ``reliability`` fields (with ``calibrate``: after the temperature fitted on the
    validation features, and ``ece_uncalibrated``, ``calibration_temperature``); none for a head without
    probabilities."""
    test = class_log_probabilities(head, xs["test"], classes)
    if test is None:
        if calibrate:
            raise UserError("--calibrate needs a head that gives probabilities (logreg, mlp, linear, softmax)")
        return {}
    fields: dict[str, Any] = {}
    temperature = 1.0
    if calibrate:
        if not len(ys["val"]):
            raise UserError("--calibrate fits the temperature on the validation set, and this probe has none: "
                            "keep some validation images (--val-per-class, or a val ratio)")
        temperature = fit_temperature(class_log_probabilities(head, xs["val"], classes), ys["val"])
        fields["calibration_temperature"] = temperature
        fields["ece_uncalibrated"] = expected_calibration_error(_softmax(test, 1.0), ys["test"])
    probabilities = _softmax(test, temperature)
    fields["ece"] = expected_calibration_error(probabilities, ys["test"])
    fields["reliability"] = reliability_bins(probabilities, ys["test"])
    return fields
