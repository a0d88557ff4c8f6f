"""The run store: a run's life (claim, finish, fail, retry), JSON round trips, two writers at once."""

from __future__ import annotations

import multiprocessing
import os

from transferlab.study.store import RunStore

LABELS = {"study": "s", "method": "m", "kind": "probe", "runner": "probe", "backbone": "b", "axes": {"seed": 1}}


def test_finished_run_round_trips_and_is_not_claimed_again(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.claim("r1", LABELS, {"seed": 1})
    store.finish("r1", {"accuracy": 0.75, "history": [{"epoch": 1}], "model_path": "/m"}, 2.5, {"torch": "x"})
    row = store.get("r1")
    assert (row.status, row.accuracy, row.seconds, row.model_path) == ("done", 0.75, 2.5, "/m")
    assert row.result["history"] == [{"epoch": 1}] and row.axes == {"seed": 1} and row.environment == {"torch": "x"}
    assert not store.claim("r1", LABELS, {"seed": 1})
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_run_keeps_its_error_and_is_retried(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.claim("r1", LABELS, {})
    store.fail("r1", "ValueError: bad", "Traceback ...", 0.1, {})
    assert store.get("r1").error == "ValueError: bad"
    assert store.claim("r1", LABELS, {})
    row = store.get("r1")
    assert (row.status, row.attempts, row.error) == ("running", 2, None)


def test_run_claimed_by_a_dead_process_is_reclaimed(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.claim("r1", LABELS, {})
    process = multiprocessing.get_context("fork").Process(target=os.getpid)
    process.start()
    process.join()
    store.db.execute("UPDATE runs SET pid = ? WHERE id = 'r1'", (process.pid,))
    assert store.claim("r1", LABELS, {})


def test_run_claimed_by_a_live_process_is_left_alone(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.claim("r1", LABELS, {})
    store.db.execute("UPDATE runs SET pid = ? WHERE id = 'r1'", (os.getppid(),))
    assert not store.claim("r1", LABELS, {})


def _write_many(path: str, prefix: str, count: int) -> None:
    store = RunStore(path)
    for i in range(count):
        store.claim(f"{prefix}{i}", LABELS, {"i": i})
        store.finish(f"{prefix}{i}", {"accuracy": i / count}, 0.0, {})
    store.close()


def test_two_processes_write_the_same_store_at_once(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    RunStore(path).close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_many, args=(path, prefix, 40)) for prefix in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    rows = RunStore(path).runs(status="done")
    assert len(rows) == 80


def test_filters_select_runs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.claim("aa1", LABELS, {})
    store.claim("bb2", {**LABELS, "method": "other"}, {})
    store.finish("bb2", {"accuracy": 1.0}, 0.0, {})
    assert [r.id for r in store.runs(method="other")] == ["bb2"]
    assert [r.id for r in store.runs(status="running")] == ["aa1"]
    assert [r.id for r in store.runs(id_prefix="aa")] == ["aa1"]
    assert [r.id for r in store.runs(["bb2", "aa1"])] == ["bb2", "aa1"]
