"""The runs a report shows: stored typed results with their labels (method, backbone, swept values)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError
from ..results import RunResult
from ..study.axes import axis_key, setting_text

REPLICATES = ("seed", "fold")  # axes a setting is repeated over: its rows aggregate them


@dataclass
class RunRecord:
    id: str
    method: str
    kind: str
    backbone: str
    axes: dict[str, Any]
    status: str  # done, failed, running, missing (planned, never run), unreadable (stored in another layout),
    # invalid (its stored values are not a result: a NaN or out-of-range accuracy, a torn table...)
    result: RunResult | None = None  # a ProbeResult or FinetuneResult once done
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    environment: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status == "done" and self.result is not None

    @property
    def accuracy(self) -> float | None:
        return self.result.accuracy if self.done else None

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0) or 0)

    @property
    def fold(self) -> int | None:
        """The cross-validation fold this run tested on (None without ``folds``)."""
        fold = self.config.get("fold", self.axes.get("fold"))
        return None if fold is None else int(fold)

    def setting(self, *drop: str) -> tuple:
        """The swept values except ``drop`` (and the seed and fold), hashable (a list value as its text): a
        grouping key."""
        return tuple((k, axis_key(v)) for k, v in self.axes.items() if k not in REPLICATES and k not in drop)

    def setting_text(self, *drop: str) -> str:
        return setting_text({k: v for k, v in self.axes.items() if k not in REPLICATES and k not in drop})

    def label(self, *drop: str) -> str:
        text = self.setting_text(*drop)
        return f"{self.method} / {self.backbone}" + (f" [{text}]" if text else "")


def from_row(row, method: str | None = None, backbone: str | None = None, axes: dict | None = None,
             kind: str | None = None) -> RunRecord:
    status, error = row.status, row.error
    if status == "done" and row.result is None and row.result_problem:
        status = "invalid"
        error = f"its stored result is not valid ({row.result_problem}): left out of the comparisons; run it again"
    elif status == "done" and row.result is None:
        status = "unreadable"
        error = (f"its stored result (layout {row.result_schema}) cannot be read by this version of transferlab: "
                 "run it again")
    return RunRecord(
        id=row.id, method=method or row.method or "?", kind=kind or row.kind or "?", backbone=backbone or row.backbone or "?",
        axes=axes if axes is not None else row.axes, status=status, result=row.result, config=row.config or {},
        error=error, seconds=row.seconds, environment=row.environment,
    )


def records_for_plan(store, plan) -> list[RunRecord]:
    """Every planned run of a study, labelled as the study names it, whether it ran or not."""
    records = []
    for run in plan.runs:
        row = store.get(run.run_id)
        if row is None:
            records.append(RunRecord(run.run_id, run.method, run.kind, run.backbone, run.axes, "missing",
                                     config=asdict(run.config)))
        else:
            records.append(from_row(row, run.method, run.backbone, run.axes, run.kind))
    return records


def records_for_ids(store, ids: list[str]) -> list[RunRecord]:
    """Stored runs by id or unambiguous id prefix."""
    records = []
    for prefix in ids:
        rows = store.runs(id_prefix=prefix)
        if not rows:
            raise UserError(f"no stored run with id {prefix!r} in {store.shown}")
        if len(rows) > 1 and not any(r.id == prefix for r in rows):
            raise UserError(f"run id {prefix!r} is ambiguous: {', '.join(r.id for r in rows[:5])}")
        row = next((r for r in rows if r.id == prefix), rows[0])
        records.append(from_row(row))
    return records
