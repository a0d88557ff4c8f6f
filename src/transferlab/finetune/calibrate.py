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
from ..engine.loop import collect
from ..engine.runtime import Runtime
from ..errors import UserError
from ..tta import scored_forward


def sample_logits(model: torch.nn.Module, samples: list[Sample], transform, runtime: Runtime, batch_size: int,
                  views: int = 1, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits (log-probabilities, ``views`` averaged at ``temperature``, when either is not 1) and labels of the
    readable ``samples``: each process scores its slice through ``collect``, the slices gathered in order."""
    mine = runtime.shard(len(samples))
    part = samples[mine.start : mine.stop]
    batches = image_batches([s.path for s in part], transform, batch_size, None, runtime.pin_memory, runtime.device)
    found = collect(model, batches, runtime, scored_forward(model, temperature, views))
    logits = found.outputs.numpy() if found.indices else np.zeros((0, 0), dtype=np.float32)
    parts = runtime.gather((logits, [part[i].label for i in found.indices]))
    every = [p[0] for p in parts if len(p[0])] or [np.zeros((0, 0), dtype=np.float32)]  # a rank may have none
    return np.concatenate(every), np.asarray([y for p in parts for y in p[1]], dtype=np.int64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.from_numpy(logits).double().div(temperature).softmax(dim=1).numpy()


def after_training(model: torch.nn.Module, val: list[Sample], test: list[Sample], transform, runtime: Runtime,
                   batch_size: int, calibrate: bool, views: int, test_scored: tuple[np.ndarray, np.ndarray]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the result's calibration and TTA fields, what the bundle's description adds: the temperature).

    ``test_scored`` is the test set's logits and labels as the run's test evaluation predicted them: the ECE is
    of the same predictions as the accuracy, and the test set is not predicted again for it."""
    temperature = 1.0
    fields: dict[str, Any] = {}
    if calibrate:
        val_logits, val_labels = sample_logits(model, val, transform, runtime, batch_size)
        if len(val_labels) == 0:
            raise UserError("--calibrate fits the temperature on the validation set, and this run has no readable "
                            "validation images: keep some (--val-per-class, or a val ratio)")
        temperature = fit_temperature(val_logits, val_labels)
        fields["calibration_temperature"] = temperature
    logits, labels = test_scored
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
