"""Several workers on one store: a worker killed mid-run loses nothing and no run is done twice.

The same test runs on a SQLite file and on a real PostgreSQL server (started here by an unprivileged
user; skipped with a message if it cannot be). The killed worker runs under another hostname when this
machine allows a UTS namespace (as a container would), so only its heartbeat's expiry can free its run.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from store_helpers import PostgresServer, wait_for
from study_fixtures import TINY_BACKBONE, make_image_folder, write_study

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
STUDY = f"""
    name: workers
    data: data
    backbones: [{TINY_BACKBONE}]
    settings: {{num_workers: 0, batch_size: 8}}
    methods:
      - {{name: logreg, kind: probe, head: logreg}}
    sweep:
      per_class: [2, 3]
      seed: [0, 1]
    """


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    return request.getfixturevalue("postgres").database()


def _other_host_prefix() -> list[str]:
    """Run a command under another hostname (its own UTS namespace), where this machine allows it."""
    if shutil.which("unshare") and subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--uts", "sh", "-c", 'hostname transferlab-other-host && exec "$@"', "sh"]
    return []


def _worker(study: Path, store: str, log: Path, sleep: float, env: dict, prefix: list[str] = ()) -> subprocess.Popen:
    command = [*prefix, sys.executable, str(TESTS / "store_worker.py"), str(study), store, str(log)]
    return subprocess.Popen(command, env={**env, "WORKER_RUN_SLEEP": str(sleep)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _lines(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    return [(kind, run_id, int(pid)) for kind, run_id, pid in (l.split() for l in log.read_text().splitlines())]


def test_a_worker_killed_mid_run_loses_nothing_and_no_run_is_done_twice(store_url, tmp_path):
    from transferlab.study import RunStore, load_study, plan_study

    make_image_folder(tmp_path / "data", per_class=6)
    study = write_study(tmp_path, STUDY)
    run_ids = {run.run_id for run in plan_study(load_study(study)).runs}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "HF_HUB_OFFLINE": "1",
           "TRANSFERLAB_HEARTBEAT_SECONDS": "0.2", "TRANSFERLAB_CLAIM_EXPIRY_SECONDS": "2",
           "OMP_NUM_THREADS": "1"}
    log = tmp_path / "log"
    doomed = _worker(study, store_url, log, 60.0, env, _other_host_prefix())  # its runs never end by themselves
    survivor = _worker(study, store_url, log, 0.2, env)
    try:
        started = wait_for(lambda: [r for k, r, p in _lines(log) if k == "start" and p == doomed.pid],
                           what="the first worker to start a run")
        wait_for(lambda: any(p == survivor.pid for _, _, p in _lines(log)), what="the second worker to start")
        doomed.send_signal(signal.SIGKILL)  # mid-run: it sleeps inside its run
        doomed.wait(30)
        survivor.wait(240)
    finally:
        for process in (doomed, survivor):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert survivor.returncode == 0, survivor.stderr.read()
    lines = _lines(log)
    done = collections.Counter(r for k, r, _ in lines if k == "done")
    starts = collections.Counter(r for k, r, _ in lines if k == "start")
    assert done == {run_id: 1 for run_id in run_ids}  # every run recorded exactly once
    killed = started[0]
    assert starts == {run_id: 2 if run_id == killed else 1 for run_id in run_ids}
    assert all(p == survivor.pid for k, _, p in lines if k == "done")
    with RunStore(store_url, create=False, read_only=True) as store:
        rows = {r.id: r for r in store.runs()}
    assert {r.status for r in rows.values()} == {"done"} and set(rows) == run_ids
    assert rows[killed].attempts == 2 and all(rows[r].attempts == 1 for r in run_ids - {killed})
