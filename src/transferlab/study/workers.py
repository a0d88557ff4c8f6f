"""``study run --jobs N``: N worker processes on one machine, each claiming runs from the store.

The workers are spawned (never forked from a process that has loaded torch) and
set up before torch loads in them: on CPUs each gets ``cores // N`` threads; with
CUDA GPUs each sees one device through ``CUDA_VISIBLE_DEVICES``, round-robin. They
coordinate through the store's claims only, exactly as workers on several machines
do, and report each finished run to the parent through a queue. Before claiming runs
they extract the probe runs' shared features together, each its share (``prefetch``).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError
from .plan import StudyPlan
from .runner import RunEvent, RunOutcome, StudyOutcome


@dataclass(frozen=True)
class WorkerSetup:
    """What one worker process is given before torch loads in it."""

    index: int
    threads: int
    cuda_device: str | None  # its CUDA_VISIBLE_DEVICES, None on CPUs
    jobs: int = 1  # how many workers share the study


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA: CPU workers
        return []


def worker_setups(jobs: int, cores: int | None = None, gpus: list[str] | None = None) -> list[WorkerSetup]:
    """``jobs`` workers sharing the cores (at least one thread each) and, if any, the GPUs round-robin."""
    cores = cores or os.cpu_count() or 1
    gpus = visible_gpus() if gpus is None else gpus
    threads = max(1, cores // jobs)
    return [WorkerSetup(i, threads, gpus[i % len(gpus)] if gpus else None, jobs) for i in range(jobs)]


def _worker(setup: WorkerSetup, plan_bytes: bytes, store_location: str, wait: bool, events) -> None:
    """One worker process: set threads and device, then run the study's unclaimed runs into the store."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(setup.threads)
    if setup.cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = setup.cuda_device
    import torch

    torch.set_num_threads(setup.threads)
    from .prefetch import prefetch_share
    from .runner import Terminated, run_study, stop_on_sigterm
    from .store import RunStore

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers with SIGTERM
    try:
        with stop_on_sigterm():
            plan: StudyPlan = pickle.loads(plan_bytes)
            with RunStore(store_location) as store:
                pending = {run.run_id for run in plan.runs if store.status(run.run_id) != "done"}
                prefetch_share(plan, pending, setup.index, setup.jobs)
                def report(event: RunEvent) -> None:
                    o = event.outcome
                    if o.status not in ("done", "failed", "lost"):
                        return  # skipped, finished by another worker: the parent hears of it from that one
                    events.put(("run", setup.index, o.run.run_id, o.status, o.seconds, o.accuracy, o.error))

                run_study(plan, store, on_run=report, wait=wait)
    except Terminated:
        events.put(("stopped", setup.index, "terminated (SIGTERM)"))
        raise SystemExit(143)
    except UserError as exc:
        events.put(("error", setup.index, str(exc)))
        raise SystemExit(2)
    events.put(("end", setup.index, ""))


def run_workers(plan: StudyPlan, store_location: str, jobs: int, on_run: Callable[[RunEvent, int], None],
                total: int, wait: bool = True, setups: list[WorkerSetup] | None = None) -> StudyOutcome:
    """Run ``plan`` on ``jobs`` worker processes; the outcomes of the ``total`` runs left to do.

    ``on_run`` gets each run's event and the index of the worker that did it.
    """
    setups = setups or worker_setups(jobs)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    plan_bytes = pickle.dumps(plan)
    workers = [context.Process(target=_worker, args=(s, plan_bytes, store_location, wait, events),
                               name=f"transferlab-worker-{s.index}") for s in setups]
    by_id = {run.run_id: run for run in plan.runs}
    outcome, errors = StudyOutcome(), []
    for worker in workers:
        worker.start()
    try:
        running = len(workers)
        while running:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    break  # a worker killed from outside says nothing: its runs go to the others or a rerun
                continue
            kind, index = event[0], event[1]
            if kind == "run":
                _, _, run_id, status, seconds, accuracy, error = event
                result = RunOutcome(by_id[run_id], status, seconds, accuracy, error)
                outcome.outcomes.append(result)
                on_run(RunEvent(result, len(outcome.outcomes), total, None), index)
            else:
                running -= 1
                if kind == "error":
                    errors.append(event[2])
    finally:
        for worker in workers:
            if worker.is_alive() and worker.pid:
                os.kill(worker.pid, signal.SIGTERM)  # a stopped parent leaves no run marked running
        for worker in workers:
            worker.join()
    if errors:
        raise UserError(errors[0])
    return outcome
