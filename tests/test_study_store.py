"""The run store: a run's life (claim, finish, fail, retry), JSON round trips, two writers at once."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from dataclasses import replace

import pytest

from study_fixtures import finetune_result, probe_result
from transferlab.finetune.result import FinetuneResult
from transferlab.probing.result import ProbeResult
from transferlab.study.store import RESULT_SCHEMA, RunStore

LABELS = {"study": "s", "method": "m", "kind": "probe", "runner": "probe", "backbone": "b", "axes": {"seed": 1}}
FINETUNE_LABELS = {**LABELS, "kind": "finetune", "runner": "finetune"}
PROBE = probe_result(0.5)


def test_finished_run_round_trips_as_its_typed_result_and_is_not_claimed_again(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.claim("r1", FINETUNE_LABELS, {"seed": 1})
    result = finetune_result(0.75, history=[{"epoch": 1}], model_path="/m")
    store.finish("r1", result, 2.5, {"torch": "x"})
    row = store.get("r1")
    assert (row.status, row.accuracy, row.seconds, row.model_path) == ("done", 0.75, 2.5, "/m")
    assert isinstance(row.result, FinetuneResult) and row.result_schema == RESULT_SCHEMA
    assert row.result.history == [{"epoch": 1}] and row.result.stage2_start_epoch == 4
    assert row.result.runtime == {"device": "cpu", "precision": "fp32"}
    assert row.axes == {"seed": 1} and row.environment == {"torch": "x"}
    assert not store.claim("r1", FINETUNE_LABELS, {"seed": 1})
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    store.claim("p1", LABELS, {})
    store.finish("p1", PROBE, 1.0, {})
    assert isinstance(store.get("p1").result, ProbeResult) and store.get("p1").result.head == "logreg"


def test_only_a_typed_result_is_stored(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.claim("r1", LABELS, {})
    with pytest.raises(TypeError, match="RunResult"):
        store.finish("r1", {"accuracy": 0.5}, 1.0, {})


def test_store_from_before_result_schemas_gets_the_column_and_old_results_read_as_none(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("""CREATE TABLE runs (id TEXT PRIMARY KEY, study TEXT, method TEXT, kind TEXT, runner TEXT,
        backbone TEXT, axes TEXT, config TEXT NOT NULL, status TEXT NOT NULL, accuracy REAL, seconds REAL,
        result TEXT, environment TEXT, model_path TEXT, error TEXT, traceback TEXT,
        attempts INTEGER NOT NULL DEFAULT 0, pid INTEGER, host TEXT, started_at TEXT, finished_at TEXT)""")
    db.execute("""INSERT INTO runs (id, runner, axes, config, status, accuracy, result)
                  VALUES ('old', 'probe', '{}', '{}', 'done', 0.5, '{"accuracy": 0.5}')""")
    db.commit()
    db.close()
    store = RunStore(path)
    row = store.get("old")
    assert (row.status, row.accuracy, row.result, row.result_schema) == ("done", 0.5, None, None)
    store.claim("new", LABELS, {})
    store.finish("new", PROBE, 1.0, {})
    assert isinstance(store.get("new").result, ProbeResult) and store.get("new").result_schema == RESULT_SCHEMA


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
        store.finish(f"{prefix}{i}", replace(PROBE, accuracy=i / count), 0.0, {})
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
    store.finish("bb2", replace(PROBE, accuracy=1.0), 0.0, {})
    assert [r.id for r in store.runs(method="other")] == ["bb2"]
    assert [r.id for r in store.runs(status="running")] == ["aa1"]
    assert [r.id for r in store.runs(id_prefix="aa")] == ["aa1"]
    assert [r.id for r in store.runs(["bb2", "aa1"])] == ["bb2", "aa1"]
