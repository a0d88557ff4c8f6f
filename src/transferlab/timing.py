"""One timing model for every run: wall-clock seconds per named phase, measured where the phase happens.

A run records ``phases`` (``RunResult.phases``): seconds keyed by phase name. Every time a table shows is a
sum of them, so no two columns can disagree:

- training total: the ``train_*`` phases and the head's or network's training (``head_fit``,
  ``train_network``), with ``train_other`` the rest of the measured training time (optimizer set-up,
  checkpoints: the measured total less the parts, never negative unless a part was counted twice);
- its frozen part: the frozen backbone's share of it (``train_cache_read``, ``train_decode``,
  ``train_frozen_forward``), for a probe always, for fine-tuning only when frozen layers were run once
  (from scratch or with nothing frozen there is none);
- test set inference: the ``test_*`` phases (reading cached features, decoding, the frozen forward, the head
  or the network), with ``test_other`` the rest.

Features read from the cache are said to be (``from cache``) rather than shown as an inference time.
Importable without torch: the store and the report read it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

FROZEN_PHASES = ("train_cache_read", "train_decode", "train_frozen_forward")
TRAINING_PHASES = (*FROZEN_PHASES, "head_fit", "train_network", "train_other")
TEST_PHASES = ("test_cache_read", "test_decode", "test_frozen_forward", "test_predict", "test_other")
OTHER_PHASES = ("load",)  # the backbone's loading: part of the run, neither training nor testing
PHASES = (*OTHER_PHASES, *TRAINING_PHASES, *TEST_PHASES)


class Phases:
    """Seconds per phase name, added up as the run goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        if name not in PHASES:
            raise ValueError(f"unknown timing phase {name!r}")
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def waiting(self, items: Iterable[T], name: str) -> Iterator[T]:
        """``items`` passed through, the time spent waiting for each (decoding, for a loader) added to ``name``."""
        iterator = iter(items)
        while True:
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.add(name, time.perf_counter() - started)
                return
            self.add(name, time.perf_counter() - started)
            yield item

    def close(self, group: tuple[str, ...], total: float) -> float:
        """Record the rest of a measured ``total`` as the group's ``*_other`` phase; returns ``total``."""
        other = next(name for name in group if name.endswith("_other"))
        self.seconds[other] = total - sum(self.seconds.get(name, 0.0) for name in group if name != other)
        return total

    def of(self, group: tuple[str, ...]) -> dict[str, float]:
        return {name: self.seconds[name] for name in group if name in self.seconds}


def phase_sum(phases: dict[str, float], group: tuple[str, ...]) -> float | None:
    """Seconds of ``group``'s phases (None: the run recorded none of them)."""
    values = [float(phases[name]) for name in group if phases.get(name) is not None]
    return sum(values) if values else None


def phases_text(phases: dict[str, float]) -> str:
    """``load 1.20 s, train decode 0.80 s, ...``: a run's phases in the order they happen (those under 5 ms
    left out, for reading)."""
    shown = [name for name in PHASES if name in phases and abs(phases[name]) >= 0.005]
    return ", ".join(f"{name.replace('_', ' ')} {phases[name]:.2f} s" for name in shown) or "n/a"
