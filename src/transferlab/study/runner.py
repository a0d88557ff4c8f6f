"""Running a study: every planned run once, recorded in the store, resumable.

A run already ``done`` in the store is skipped; a ``failed`` one is retried; a
run that raises is recorded with its error and the study goes on. Feature
extraction is shared between runs through the feature cache, and fine-tuning
runs resume from their own checkpoints.

Several workers (``--jobs``, other machines on one store) can run one study: each
claims a run before starting it and keeps the claim alive with a heartbeat; a
worker that finds a run busy waits for it, and takes it over if its worker dies.
SIGTERM marks the run in hand as failed ("interrupted"), so a rerun redoes it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from ..errors import UserError
from ..rank.result import RankResult
from ..results import RunResult
from .environment import environment
from .plan import PlannedRun, StudyPlan
from ..progress_bars import StageProgress, stage_bars
from .store import RunStore

MODELS_FOLDER = "transferlab-models"
STUDY_STAGE = "study runs"


@dataclass
class RunOutcome:
    run: PlannedRun
    status: str  # done, failed, skipped (finished before), busy (another worker has it), elsewhere (another
    # worker finished it while this one waited), lost (another worker took it over: result not recorded)
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


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run in hand is marked failed and the study stops."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` in the main thread while the block runs (elsewhere: nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class RunEvent:
    """What the runner tells its caller after each run: the outcome and the time left."""

    outcome: RunOutcome
    index: int  # 1-based among the runs to do in this session
    total: int
    seconds_left: float | None


def execute(run: PlannedRun, models_dir: Path, progress: StageProgress | None) -> RunResult | RankResult:
    """Run one planned run through the public API; its typed result (ProbeResult, FinetuneResult or, for a rank
    method, RankResult)."""
    if run.runner == "rank":
        from ..rank.run import run_rank

        return run_rank(run.config, progress)
    if run.runner == "probe":
        from ..probing.run import run_probe

        return run_probe(logged_as(run), progress)
    from ..finetune import run_finetune

    config = replace(logged_as(run), output=str(models_dir / run.run_id), resume=True)
    return run_finetune(config, progress)


def run_study_file(study_file: str | Path, data: str | Path | None = None, store: str | Path | None = None,
                   progress: bool | StageProgress = True) -> StudyOutcome:
    """``transferlab study run STUDY_FILE`` from Python: every run of the study not yet done in its store.

    ``data`` replaces the study's ``data:``; ``store`` its store (as ``--store``); ``progress``: a bar for the
    runs and one for each run's stages on stderr (a widget in a notebook), False for none, or your own
    ``(stage, done, total)`` function. A failed run is in the outcome's ``failed``, as the command lists it."""
    from .plan import plan_study
    from .spec import load_study
    from .store import study_store_location

    spec = load_study(study_file)
    plan = plan_study(spec, None if data is None else str(data))
    with RunStore(study_store_location(None if store is None else str(store), spec)) as runs, \
            stage_bars(progress) as hook:
        return run_study(plan, runs, hook)


def logged_as(run: PlannedRun):
    """The run's config named for ``--log``: the study's experiment (unless one is given), run method/run id."""
    config = run.config
    return replace(config, log_experiment=config.log_experiment or run.study, log_run=f"{run.method}/{run.run_id}")


def run_study(plan: StudyPlan, store: RunStore, progress: StageProgress | None = None,
              on_run: Callable[[RunEvent], None] | None = None, models_dir: Path | None = None,
              runner: Callable[[PlannedRun, Path, StageProgress | None], RunResult] = execute,
              wait: bool = True) -> StudyOutcome:
    """Run every planned run that is not finished in ``store``; never stops at a failing run.

    With ``wait``, runs other workers hold are waited for at the end (and taken over if their claims go stale).
    """
    models_dir = models_dir or (store.path.parent if store.path is not None else Path.cwd()) / MODELS_FOLDER
    outcome = StudyOutcome()
    todo = []
    for run in plan.runs:
        if store.status(run.run_id) == "done":
            outcome.outcomes.append(RunOutcome(run, "skipped", accuracy=_stored_accuracy(store, run.run_id)))
        else:
            todo.append(run)
    spent: list[float] = []
    finished = 0

    def record(result: RunOutcome) -> None:
        nonlocal finished
        finished += 1
        outcome.outcomes.append(result)
        if result.status in ("done", "failed"):
            spent.append(result.seconds)
        left = (sum(spent) / len(spent)) * (len(todo) - finished) if spent else None
        if progress:
            progress(STUDY_STAGE, finished, len(todo))
        if on_run:
            on_run(RunEvent(result, finished, len(todo), left))

    busy = []
    for run in todo:
        if progress:
            progress(STUDY_STAGE, finished, len(todo))
        result = _run_one(run, store, models_dir, progress, runner)
        if result.status == "busy" and wait:
            busy.append(run)
        else:
            record(result)
    poll, longest = 0.1, min(max(store.policy.heartbeat / 2, 0.05), 5.0)
    while busy:  # the runs other workers hold: wait for them, take over any whose worker died
        time.sleep(poll)
        poll = min(poll * 2, longest)  # a run about to finish is seen at once, a long one polled rarely
        still = []
        for run in busy:
            status = store.status(run.run_id)
            if status in ("done", "failed"):
                row = store.get(run.run_id)
                record(RunOutcome(run, "elsewhere", row.seconds or 0.0, row.accuracy if row else None,
                                  row.error if row else None))
                continue
            result = _run_one(run, store, models_dir, progress, runner)
            if result.status == "busy":
                still.append(run)
            else:
                record(result)
        busy = still
    return outcome


def _run_one(run: PlannedRun, store: RunStore, models_dir: Path, progress: StageProgress | None, runner) -> RunOutcome:
    labels = {"study": run.study, "method": run.method, "kind": run.kind, "runner": run.runner,
              "backbone": run.backbone, "axes": run.axes}
    claim = store.claim(run.run_id, labels, asdict(run.config))
    if claim is None:
        status = store.status(run.run_id)
        return RunOutcome(run, "skipped" if status == "done" else "busy")
    started = time.perf_counter()
    try:
        with store.heartbeat(claim):
            result = runner(run, models_dir, progress)
        if not isinstance(result, (RunResult, RankResult)):
            raise TypeError(f"the runner returned a {type(result).__name__}, not a RunResult or RankResult")
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the run is not left "running"
        exc.run = run  # type: ignore[attr-defined]  # the run it stopped, for the caller's one line
        store.fail(run.run_id, str(exc) or "interrupted", "", time.perf_counter() - started, environment(), claim)
        raise
    except Exception as exc:  # one failing run must not stop the study
        seconds = time.perf_counter() - started
        message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        if not store.fail(run.run_id, message, traceback.format_exc(), seconds, environment(), claim):
            return RunOutcome(run, "lost", seconds, error=message)
        return RunOutcome(run, "failed", seconds, error=message)
    seconds = time.perf_counter() - started
    if not store.finish(run.run_id, result, seconds, environment(), claim):
        return RunOutcome(run, "lost", seconds, accuracy=getattr(result, "accuracy", None))
    return RunOutcome(run, "done", seconds, accuracy=getattr(result, "accuracy", None))


def _stored_accuracy(store: RunStore, run_id: str) -> float | None:
    row = store.get(run_id)
    return row.accuracy if row else None
