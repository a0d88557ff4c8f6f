"""What the trials done cost, per backbone x freeze policy: the estimates each budget decision is made on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Costs:
    """Seconds of the trials done (per backbone x freeze): an epoch, the set-up before the first, the tail
    (test evaluation, saving) after the last; the next step's cost is estimated from them."""

    epoch: dict[str, list[float]] = field(default_factory=dict)
    setup: dict[str, list[float]] = field(default_factory=dict)
    tail: dict[str, list[float]] = field(default_factory=dict)
    first_guess: float = 0.0  # before any trial: from the probe phase (one forward pass over the images)

    @staticmethod
    def key(backbone: str, freeze: str) -> str:
        return f"{backbone}|{freeze}"

    def _of(self, table: dict[str, list[float]], key: str | None, default: float) -> float:
        values = table.get(key) if key else None
        if values:
            return max(values)
        every = [v for vs in table.values() for v in vs]
        return max(every) if every else default

    def epoch_of(self, key: str | None = None) -> float:
        return self._of(self.epoch, key, self.first_guess)

    def setup_of(self, key: str | None = None) -> float:
        return self._of(self.setup, key, self.first_guess)

    def tail_of(self, key: str | None = None) -> float:
        return self._of(self.tail, key, self.first_guess)

    def add(self, measured: dict) -> None:
        key = measured["key"]
        self.setup.setdefault(key, []).append(measured["setup"])
        self.epoch.setdefault(key, []).extend(measured["epochs"])
        if measured.get("tail") is not None:
            self.tail.setdefault(key, []).append(measured["tail"])

    def full_trial(self, epochs: int) -> float:
        """A new trial's cost to its last epoch, test evaluation and saved model (only a finished trial can be
        the winner): the worst case over the candidates seen so far."""
        return self.setup_of() + epochs * self.epoch_of() + self.tail_of()
