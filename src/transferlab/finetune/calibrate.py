"""After training: the test probabilities' calibration, temperature scaling and test-time augmentation.

``--calibrate`` fits one temperature on the validation set's logits (never the test set's, so
the test ECE after it is an honest held-out figure); ``--tta N`` scores the test set again with
N views averaged. Both go through the engine's ``predict``, as ``transferlab evaluate`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..calibration import expected_calibration_error, fit_temperature, reliability_bins
from ..data import Sample, image_batches
from ..engine.loop import predict
from ..engine.runtime import Runtime
from ..errors import UserError
from ..tta import scored_forward


def sample_logits(model: torch.nn.Module, samples: list[Sample], transform, runtime: Runtime, batch_size: int,
                  views: int = 1, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits (log-probabilities, ``views`` averaged at ``temperature``, when either is not 1) and labels of the
    readable ``samples``."""
    outputs, labels = [], []
    batches = image_batches([s.path for s in samples], transform, batch_size, None, runtime.pin_memory, runtime.device)
    for batch, logits in predict(model, scored_forward(model, temperature, views), batches, runtime):
        if logits is not None:
            outputs.append(logits.numpy())
            labels.extend(samples[i].label for i in batch.indices)
    width = len(getattr(model, "classes", [])) or 0
    return (np.concatenate(outputs) if outputs else np.zeros((0, width))), np.asarray(labels, dtype=np.int64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.from_numpy(logits).double().div(temperature).softmax(dim=1).numpy()


def after_training(model: torch.nn.Module, val: list[Sample], test: list[Sample], transform, runtime: Runtime,
                   batch_size: int, calibrate: bool, views: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the result's calibration and TTA fields, what the bundle's description adds: the temperature)."""
    temperature = 1.0
    fields: dict[str, Any] = {}
    if calibrate:
        val_logits, val_labels = sample_logits(model, val, transform, runtime, batch_size)
        if len(val_labels) == 0:
            raise UserError("--calibrate fits the temperature on the validation set, and this run has no readable "
                            "validation images: keep some (--val-per-class, or a val ratio)")
        temperature = fit_temperature(val_logits, val_labels)
        fields["calibration_temperature"] = temperature
    logits, labels = sample_logits(model, test, transform, runtime, batch_size)
    if len(labels):
        if calibrate:
            fields["ece_uncalibrated"] = expected_calibration_error(softmax(logits), labels)
        probabilities = softmax(logits, temperature)
        fields["ece"] = expected_calibration_error(probabilities, labels)
        fields["reliability"] = reliability_bins(probabilities, labels)
    if views > 1:
        # at the fitted temperature, as predict averages the views of a calibrated model
        tta_logits, tta_labels = sample_logits(model, test, transform, runtime, batch_size, views, temperature)
        fields["tta"] = views
        fields["tta_accuracy"] = float(np.mean(tta_logits.argmax(1) == tta_labels)) if len(tta_labels) else None
    return fields, ({"calibration": {"temperature": temperature}} if calibrate else {})
