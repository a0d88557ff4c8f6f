"""The record of a ``rank`` run: each candidate's scores and seconds, and Kendall's tau between two of them.

Importable without torch: the run store reads it back, and a study report compares it with measured accuracies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .config import SCORES

__all__ = ["SCORES", "Candidate", "RankResult", "kendall_tau"]


@dataclass
class Candidate:
    """One backbone x layer x pooling, its scores (None: not computed) and the seconds each took."""

    backbone: str
    layer: str
    pooling: str
    dim: int
    logme: float
    leep: float | None = None
    nce: float | None = None
    knn_accuracy: float | None = None
    logreg_accuracy: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass
class RankResult:
    data: str
    classes: list[str]
    train_images: int
    val_images: int
    candidates: list[Candidate]  # sorted by LogME, best first
    extraction_seconds: float
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def seconds_of(self, score: str) -> float:
        return sum(c.seconds.get(score, 0.0) for c in self.candidates)

    def kendall_tau(self, score: str, against: str = "logreg_accuracy") -> float | None:
        """Kendall's tau (scipy's tau-b) between a score and the measured accuracy over the candidates."""
        return kendall_tau([(getattr(c, score), getattr(c, against)) for c in self.candidates])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RankResult":
        """The result stored as JSON (``to_dict`` or ``asdict``) back as a record; derived keys are dropped."""
        names = {f.name for f in fields(Candidate)}
        candidates = [Candidate(**{k: v for k, v in c.items() if k in names}) for c in data["candidates"]]
        own = {f.name for f in fields(cls)} - {"candidates"}
        return cls(candidates=candidates, **{k: v for k, v in data.items() if k in own})

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for row, candidate in zip(record["candidates"], self.candidates):
            row["total_seconds"] = candidate.total_seconds
        record["seconds"] = {s: self.seconds_of(s) for s in SCORES}
        record["kendall_tau_vs_logreg"] = {s: self.kendall_tau(s) for s in SCORES if s != "logreg_accuracy"}
        return record


def kendall_tau(pairs) -> float | None:
    """Kendall's tau (scipy's tau-b) of (score, accuracy) pairs, those with a None left out; None where it is
    undefined: fewer than 3 pairs, or a side that is constant (all tied)."""
    from scipy.stats import kendalltau

    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if len(pairs) < 3:
        return None
    tau = kendalltau(*zip(*pairs)).statistic
    return None if tau is None or np.isnan(tau) else float(tau)
