"""Values read back from a run store, the feature cache or a saved model's description are input like any other.

A store row edited by hand, a cache file changed on disk or a description from elsewhere can hold a NaN, an
accuracy of 7.5 or a vector of 1e6: these checks say what is wrong (a short phrase, or None when nothing is)
before anything computes with the value. The store marks such a result invalid (the report flags the run and
leaves it out of its comparisons), the cache discards the entry and recomputes it, a bundle is refused.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

UNIT_FIELDS = ("accuracy", "macro_f1", "train_accuracy_final", "val_accuracy_final", "val_accuracy_max")
COUNT_FIELDS = ("train_images", "val_images", "test_images", "unreadable_count")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_problem(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                   optional: bool = False, integer: bool = False) -> str | None:
    """What is wrong with ``value`` as a finite number in [low, high] (an int with ``integer``), or None."""
    if value is None and optional:
        return None
    if not is_number(value) or (integer and not isinstance(value, int)):
        return f"{name} is {value!r}, not {'a whole number' if integer else 'a number'}"
    if not math.isfinite(value):
        return f"{name} is {value!r}, not a finite number"
    if not low <= value <= high:
        return f"{name} is {value!r}, " + (f"outside [{low:g}, {high:g}]" if math.isfinite(high) else f"below {low:g}")
    return None


def result_problem(result: Any) -> str | None:
    """What is wrong with a stored run result (a ``RunResult``) for a report to compute with, or None."""
    for name in UNIT_FIELDS:
        if hasattr(result, name):
            problem = number_problem(name, getattr(result, name), 0.0, 1.0, optional=name != "accuracy")
            if problem:
                return problem
    for name in COUNT_FIELDS:
        problem = number_problem(name, getattr(result, name, None), 0, integer=True)
        if problem:
            return problem
    classes = result.classes
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return "classes is not a list of names"
    interval = result.accuracy_interval
    if not isinstance(interval, list) or interval and (
            len(interval) != 2 or any(number_problem("interval", v, 0.0, 1.0) for v in interval)):
        return f"accuracy_interval is {interval!r}, not two numbers in [0, 1]"
    matrix = result.confusion_matrix
    if not isinstance(matrix, list) or matrix and (
            len(matrix) != len(classes) or not all(isinstance(row, list) and len(row) == len(classes) for row in matrix)
            or any(number_problem("count", v, 0, integer=True) for row in matrix for v in row)):
        return "confusion_matrix is not a square table of counts, one row per class"
    if not isinstance(result.predictions, list) or not all(
            isinstance(p, dict) and {"true", "predicted"} <= p.keys() for p in result.predictions):
        return "predictions is not a list of {path, true, predicted} records"
    if not isinstance(result.history, list) or not all(isinstance(h, dict) for h in result.history):
        return "history is not a list of epoch records"
    for record in result.history:
        for key, value in record.items():
            if is_number(value) and not math.isfinite(value):
                return f"history epoch {record.get('epoch')!r} has {key} = {value!r}"
    return None


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes, its dtype and shape: what was stored, to compare with what is read back."""
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def features_problem(array: Any, shape: tuple[int, ...], digest: str | None) -> str | None:
    """What is wrong with a feature vector read back from the cache (its shape and dtype, non-finite values,
    a digest that is not the one stored with it), or None."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.shape != shape:
        got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
        return f"holds {got}, not float32 {shape}"
    if not np.isfinite(array).all():
        return "holds values that are not finite"
    if digest is None or array_digest(array) != digest:
        return "does not match the digest stored with it"
    return None
