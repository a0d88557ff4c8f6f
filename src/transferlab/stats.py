"""How sure a figure is: intervals for accuracies and paired tests between methods (scipy, no torch).

On a few hundred test images one or two images decide a ranking, so every accuracy is
shown with a 95% interval and two methods tested on the same images are compared image
by image, never by their accuracies alone:

- ``wilson_interval(k, n)``: the Wilson score interval of an accuracy of k correct of n;
- ``mean_interval(values)``: mean, sample std and the t-interval of the mean over seeds or folds;
- ``mcnemar_exact(a, b)``: the exact McNemar test on paired per-image correctness (a binomial
  test on the images exactly one of the two got right);
- ``paired_bootstrap(a, b)``: a seeded bootstrap interval of the accuracy difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
NOISE_LEVEL = 0.05  # a difference with McNemar p at or above this is within noise
ACCURACY = (0.0, 1.0)  # the bounds of an accuracy (``mean_interval(..., bounds=ACCURACY)``)


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``correct / total`` (``(nan, nan)`` for no images)."""
    if total <= 0:
        return (math.nan, math.nan)
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be between 0 and total ({total}), got {correct}")
    ci = scipy_stats.binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


@dataclass(frozen=True)
class MeanInterval:
    """Mean and sample standard deviation of ``n`` values, and the t-interval of the mean."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "interval": [self.low, self.high], "n": self.n}


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE,
                  bounds: tuple[float, float] | None = None) -> MeanInterval:
    """Mean ± sample std and the Student-t interval of the mean (``nan`` bounds for fewer than two values),
    clipped to ``bounds`` (``(0, 1)`` for accuracies: with two seeds t = 12.7 reaches past them)."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise ValueError("no values")
    mean = float(array.mean())
    if array.size < 2:
        return MeanInterval(mean, 0.0, math.nan, math.nan, 1)
    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=array.size - 1)) * std / math.sqrt(array.size)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return MeanInterval(mean, std, low, high, int(array.size))


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of two methods on the same ``n`` images.

    ``only_a``: images A got right and B wrong; ``only_b``: the reverse. Under "no
    difference" each discordant image is a fair coin, so p is a two-sided binomial test.
    """

    n: int
    only_a: int
    only_b: int
    p_value: float

    @property
    def within_noise(self) -> bool:
        return self.p_value >= NOISE_LEVEL


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    """Exact McNemar test on paired per-image correctness of methods A and B (same images, same order)."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired correctness needs the same images: {a.size} and {b.size} given")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(scipy_stats.binomtest(only_a, discordant, 0.5).pvalue)
    return McNemar(int(a.size), only_a, only_b, min(1.0, p))


def paired_bootstrap(a_correct: Sequence[bool], b_correct: Sequence[bool], resamples: int = 2000, seed: int = 0,
                     confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(accuracy of A − accuracy of B, and its percentile bootstrap interval), resampling images in pairs."""
    a = np.asarray(a_correct, dtype=float)
    b = np.asarray(b_correct, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired bootstrap needs the same, non-empty set of images for both methods")
    difference = a - b
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, a.size, size=(resamples, a.size))
    means = difference[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(difference.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def interval_text(low: float, high: float, digits: int = 3) -> str:
    """``[0.812, 0.901]``, or an empty string when there is no interval."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def p_text(p: float) -> str:
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"
