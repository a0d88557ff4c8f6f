"""Scoring predictions and timing inference, the same way for every kind of run."""

from __future__ import annotations

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
                           transform, runtime: Runtime = CPU) -> float:
    """Milliseconds per image of ``forward`` on a batch of preprocessed images (decoding excluded).

    One small warm-up call first: the first calls allocate and pick kernels.
    """
    batch = next(iter(image_batches(list(paths[:INFERENCE_BATCH]), transform, INFERENCE_BATCH, 0)), None)
    if batch is None or batch.images is None:
        return float("nan")
    images = batch.images
    list(predict(model, forward, [images[:2]], runtime, inputs_of=lambda x: x))
    started = time.perf_counter()
    list(predict(model, forward, [images], runtime, inputs_of=lambda x: x))
    return (time.perf_counter() - started) * 1000.0 / len(images)
