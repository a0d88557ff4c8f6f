"""Scoring predictions and timing inference, the same way for every kind of run."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from .data import image_batches
from .engine.loop import predict
from .engine.runtime import CPU, Runtime
from .stats import wilson_interval

INFERENCE_BATCH = 16
TIMED_CALLS = 2
_MEASURED: dict[tuple, float] = {}  # per process: (speed key, runtime) -> ms per image


def score(truth: Sequence[int], predicted: Sequence[int], classes: list[str],
          paths: Sequence[Path] | None = None) -> dict[str, Any]:
    """Accuracy with its 95% Wilson interval, macro F1, the confusion matrix and (with ``paths``) every
    image's prediction."""
    correct = int(sum(int(t) == int(q) for t, q in zip(truth, predicted)))
    scores: dict[str, Any] = {
        "accuracy": float(accuracy_score(truth, predicted)),
        "accuracy_interval": list(wilson_interval(correct, len(truth))),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "confusion_matrix": confusion_matrix(truth, predicted, labels=range(len(classes))).tolist(),
    }
    if paths is not None:
        scores["predictions"] = [
            {"path": str(p), "true": classes[int(t)], "predicted": classes[int(q)]}
            for p, t, q in zip(paths, truth, predicted)
        ]
    return scores


def inference_ms_per_image(model: torch.nn.Module, forward: Callable[[torch.Tensor], Any], paths: Sequence[Path],
                           transform, runtime: Runtime = CPU, key: tuple | None = None) -> float:
    """Milliseconds per image of ``forward`` on one batch of preprocessed images, the same footing for every
    backbone: ``INFERENCE_BATCH`` images (fewer test images repeated to fill it), decoding excluded, no feature
    cache, warm (``per_image_ms``). With ``key`` (what decides the speed: architecture, input size, layer,
    head...) it is measured once per process and runtime, and reused: a study's runs of one backbone share it.
    """
    memo = (key, json.dumps(runtime.describe(), sort_keys=True, default=str)) if key is not None else None
    if memo in _MEASURED:
        return _MEASURED[memo]
    batch = next(iter(image_batches(list(paths[:INFERENCE_BATCH]), transform, INFERENCE_BATCH, 0)), None)
    if batch is None or batch.images is None:
        return float("nan")
    images = full_batch(batch.images)
    ms = per_image_ms(lambda: list(predict(model, forward, [images], runtime, inputs_of=lambda x: x)), len(images))
    if memo is not None:
        _MEASURED[memo] = ms
    return ms


def full_batch(rows):
    """``rows`` repeated up to ``INFERENCE_BATCH`` (a tensor or an array): every timing sees one batch size."""
    if len(rows) >= INFERENCE_BATCH:
        return rows[:INFERENCE_BATCH]
    index = [i % len(rows) for i in range(INFERENCE_BATCH)]
    return rows[index]


def per_image_ms(call: Callable[[], Any], images: int) -> float:
    """Milliseconds per image of ``call`` on ``images`` images: one untimed call first (the first calls allocate
    memory and pick kernels for this batch shape), then the fastest of ``TIMED_CALLS``."""
    call()
    best = math.inf
    for _ in range(TIMED_CALLS):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000.0 / images
