"""Running a study: every planned run once, recorded in the store, resumable.

A run already ``done`` in the store is skipped; a ``failed`` one is retried; a
run that raises is recorded with its error and the study goes on. Feature
extraction is shared between runs through the feature cache, and fine-tuning
runs resume from their own checkpoints.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..results import RunResult
from .environment import environment
from .plan import PlannedRun, StudyPlan
from .store import RunStore

StageProgress = Callable[[str, int, int], None]
MODELS_FOLDER = "transferlab-models"
STUDY_STAGE = "study runs"


@dataclass
class RunOutcome:
    run: PlannedRun
    status: str  # done, failed, skipped (finished before), busy (another process has it)
    seconds: float = 0.0
    accuracy: float | None = None
    error: str | None = None


@dataclass
class StudyOutcome:
    outcomes: list[RunOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


@dataclass
class RunEvent:
    """What the runner tells its caller after each run: the outcome and the time left."""

    outcome: RunOutcome
    index: int  # 1-based among the runs to do in this session
    total: int
    seconds_left: float | None


def execute(run: PlannedRun, models_dir: Path, progress: StageProgress | None) -> RunResult:
    """Run one planned run through the public API; its typed result (ProbeResult or FinetuneResult)."""
    if run.runner == "probe":
        from ..probing.run import run_probe

        return run_probe(run.config, progress)
    from ..finetune import run_finetune

    config = replace(run.config, output=str(models_dir / run.run_id), resume=True)
    return run_finetune(config, progress)


def run_study(plan: StudyPlan, store: RunStore, progress: StageProgress | None = None,
              on_run: Callable[[RunEvent], None] | None = None, models_dir: Path | None = None,
              runner: Callable[[PlannedRun, Path, StageProgress | None], RunResult] = execute) -> StudyOutcome:
    """Run every planned run that is not finished in ``store``; never stops at a failing run."""
    models_dir = models_dir or store.path.parent / MODELS_FOLDER
    outcome = StudyOutcome()
    todo = []
    for run in plan.runs:
        if store.status(run.run_id) == "done":
            outcome.outcomes.append(RunOutcome(run, "skipped", accuracy=_stored_accuracy(store, run.run_id)))
        else:
            todo.append(run)
    spent: list[float] = []
    for index, run in enumerate(todo, start=1):
        if progress:
            progress(STUDY_STAGE, index - 1, len(todo))
        result = _run_one(run, store, models_dir, progress, runner)
        outcome.outcomes.append(result)
        if result.status in ("done", "failed"):
            spent.append(result.seconds)
        left = (sum(spent) / len(spent)) * (len(todo) - index) if spent else None
        if progress:
            progress(STUDY_STAGE, index, len(todo))
        if on_run:
            on_run(RunEvent(result, index, len(todo), left))
    return outcome


def _run_one(run: PlannedRun, store: RunStore, models_dir: Path, progress: StageProgress | None, runner) -> RunOutcome:
    labels = {"study": run.study, "method": run.method, "kind": run.kind, "runner": run.runner,
              "backbone": run.backbone, "axes": run.axes}
    if not store.claim(run.run_id, labels, asdict(run.config)):
        status = store.status(run.run_id)
        return RunOutcome(run, "skipped" if status == "done" else "busy")
    started = time.perf_counter()
    try:
        result = runner(run, models_dir, progress)
        if not isinstance(result, RunResult):
            raise TypeError(f"the runner returned a {type(result).__name__}, not a RunResult")
    except KeyboardInterrupt:
        store.fail(run.run_id, "interrupted", "", time.perf_counter() - started, environment())
        raise
    except Exception as exc:  # one failing run must not stop the study
        seconds = time.perf_counter() - started
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        store.fail(run.run_id, message, traceback.format_exc(), seconds, environment())
        return RunOutcome(run, "failed", seconds, error=message)
    seconds = time.perf_counter() - started
    store.finish(run.run_id, result, seconds, environment())
    return RunOutcome(run, "done", seconds, accuracy=result.accuracy)


def _stored_accuracy(store: RunStore, run_id: str) -> float | None:
    row = store.get(run_id)
    return row.accuracy if row else None
