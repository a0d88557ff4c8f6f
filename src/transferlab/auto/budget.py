"""The wall-clock budget of an ``auto`` run: parsed from ``20m`` / ``90s`` / ``1h30m``, and asked before each step
whether the step's estimated cost still fits."""

from __future__ import annotations

import math
import re
import time
from typing import Callable

from ..errors import UserError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms]?)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_budget(text: str | float | int) -> float:
    """Seconds of ``text``: ``90`` / ``90s``, ``20m``, ``1.5h``, ``1h30m``; a UserError for anything else or <= 0."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        compact = str(text).strip().lower().replace(" ", "")
        parts = _PART.findall(compact)
        if not compact or "".join(n + u for n, u in parts) != compact or (len(parts) > 1 and "" in [u for _, u in parts]):
            raise UserError(f"budget must be a duration such as 90s, 20m, 1.5h or 1h30m, got {text!r}")
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"budget must be a positive duration such as 90s, 20m or 1h, got {text!r}")
    return seconds


class Budget:
    """Seconds left since the start; ``fits(cost)`` before a step, so a run stops before overrunning, not after."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.started = clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def left(self) -> float:
        return self.seconds - self.elapsed

    def fits(self, cost: float) -> bool:
        return cost <= self.left
