"""The run store: every run's config, result, history, timings and environment in one SQLite file.

SQLite from the standard library, in WAL mode with a busy timeout, and every
write in an immediate transaction: two processes may run studies into the same
store at once. A run is *claimed* before it starts, so a second process skips a
run the first one is working on (unless that process has died).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError

STORE_ENV = "TRANSFERLAB_STORE"
DEFAULT_STORE = "transferlab-runs.sqlite"
BUSY_TIMEOUT_MS = 60_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,          -- stable hash of the run's config (see study.identity)
    study TEXT,
    method TEXT,
    kind TEXT,                    -- probe, temperature, finetune, scratch
    runner TEXT,                  -- probe or finetune
    backbone TEXT,
    axes TEXT,                    -- JSON: the swept values of this run
    config TEXT NOT NULL,         -- JSON: the full run config
    status TEXT NOT NULL,         -- running, done, failed
    accuracy REAL,
    seconds REAL,                 -- wall-clock seconds of the whole run
    result TEXT,                  -- JSON: the ProbeResult / FinetuneResult, history included
    environment TEXT,             -- JSON: versions, CPU, threads, platform
    model_path TEXT,
    error TEXT,
    traceback TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    host TEXT,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_study ON runs(study);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""


def default_store_path() -> Path:
    """``$TRANSFERLAB_STORE``, else ``transferlab-runs.sqlite`` in the current folder."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE).expanduser()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRow:
    """One stored run, JSON columns decoded."""

    id: str
    study: str | None
    method: str | None
    kind: str | None
    runner: str | None
    backbone: str | None
    axes: dict
    config: dict
    status: str
    accuracy: float | None
    seconds: float | None
    result: dict | None
    environment: dict | None
    model_path: str | None
    error: str | None
    traceback: str | None
    attempts: int
    pid: int | None
    host: str | None
    started_at: str | None
    finished_at: str | None


JSON_COLUMNS = ("axes", "config", "result", "environment")


class RunStore:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path).expanduser() if path else default_store_path()
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            if not self._has_schema():
                self.db.executescript(SCHEMA)  # CREATE ... IF NOT EXISTS: safe when two processes race
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open the run store {self.path}: {exc}") from None

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
            return self.db

        def __exit__(self, kind, value, tb):
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def transaction(self) -> "_Transaction":
        return self._Transaction(self.db)

    # -- the life of a run -----------------------------------------------------
    def claim(self, run_id: str, labels: dict[str, Any], config: dict) -> bool:
        """Mark a run as running by this process; False if it is done or another live process has it."""
        with self.transaction() as db:
            row = db.execute("SELECT status, pid, host FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                if row["status"] == "done":
                    return False
                if row["status"] == "running" and _alive(row["pid"], row["host"]):
                    return False
            db.execute(
                """INSERT INTO runs (id, study, method, kind, runner, backbone, axes, config, status, attempts,
                                     pid, host, started_at)
                   VALUES (:id, :study, :method, :kind, :runner, :backbone, :axes, :config, 'running', 1,
                           :pid, :host, :started_at)
                   ON CONFLICT(id) DO UPDATE SET study = :study, method = :method, kind = :kind, runner = :runner,
                       backbone = :backbone, axes = :axes, config = :config, status = 'running',
                       attempts = attempts + 1, pid = :pid, host = :host, started_at = :started_at,
                       error = NULL, traceback = NULL""",
                {"id": run_id, **{k: labels.get(k) for k in ("study", "method", "kind", "runner", "backbone")},
                 "axes": json.dumps(labels.get("axes", {}), default=str), "config": json.dumps(config, default=str),
                 "pid": os.getpid(), "host": socket.gethostname(), "started_at": _now()},
            )
            return True

    def finish(self, run_id: str, result: dict, seconds: float, environment: dict) -> None:
        with self.transaction() as db:
            db.execute(
                """UPDATE runs SET status = 'done', accuracy = ?, seconds = ?, result = ?, environment = ?,
                                  model_path = ?, finished_at = ?, pid = NULL WHERE id = ?""",
                (result.get("accuracy"), seconds, json.dumps(result, default=str), json.dumps(environment),
                 result.get("model_path"), _now(), run_id),
            )

    def fail(self, run_id: str, error: str, traceback: str, seconds: float, environment: dict) -> None:
        with self.transaction() as db:
            db.execute(
                """UPDATE runs SET status = 'failed', error = ?, traceback = ?, seconds = ?, environment = ?,
                                  finished_at = ?, pid = NULL WHERE id = ?""",
                (error, traceback, seconds, json.dumps(environment), _now(), run_id),
            )

    # -- reading -----------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row["status"] if row else None

    def get(self, run_id: str) -> RunRow | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _decode(row) if row else None

    def runs(self, ids: list[str] | None = None, *, study: str | None = None, method: str | None = None,
             backbone: str | None = None, status: str | None = None, id_prefix: str | None = None) -> list[RunRow]:
        """Stored runs matching every filter given (ids in the order asked, else oldest first)."""
        clauses, params = [], []
        for column, value in (("study", study), ("method", method), ("backbone", backbone), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if id_prefix:
            clauses.append("id LIKE ?")
            params.append(id_prefix + "%")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = [_decode(r) for r in self.db.execute(f"SELECT * FROM runs{where} ORDER BY started_at, id", params)]
        if ids is None:
            return rows
        by_id = {r.id: r for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def __iter__(self) -> Iterator[RunRow]:
        return iter(self.runs())


def _decode(row: sqlite3.Row) -> RunRow:
    data = dict(row)
    for column in JSON_COLUMNS:
        data[column] = json.loads(data[column]) if data[column] else ({} if column in ("axes", "config") else None)
    return RunRow(**data)


def _alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that claimed a run still exists (only knowable on the same host)."""
    if pid is None:
        return False
    if host != socket.gethostname():
        return True  # cannot check another machine: assume it is working
    if pid == os.getpid():
        return False  # a claim left by this very process (an earlier, interrupted attempt)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
