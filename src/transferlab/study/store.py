"""The run store: every run's config, result, history, timings and environment in one SQLite file.

SQLite from the standard library, in WAL mode with a busy timeout, and every
write in an immediate transaction: two processes may run studies into the same
store at once. A run is *claimed* before it starts, so a second process skips a
run the first one is working on (unless that process has died).

A result is stored as the JSON of its typed record (``ProbeResult`` or
``FinetuneResult``, by the run's ``runner``) with the version of that layout
(``result_schema``); reading a run gives the typed record back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError
from ..finetune.result import FinetuneResult
from ..probing.result import ProbeResult
from ..results import RunResult

STORE_ENV = "TRANSFERLAB_STORE"
DEFAULT_STORE = "transferlab-runs.sqlite"
BUSY_TIMEOUT_MS = 60_000
RESULT_SCHEMA = 1  # the layout of the stored result JSON: a RunResult subclass's fields

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
    result_schema INTEGER,        -- the layout of result (RESULT_SCHEMA when written)
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
    result: RunResult | None  # ProbeResult or FinetuneResult; None until done, or stored in a layout not read here
    environment: dict | None
    model_path: str | None
    error: str | None
    traceback: str | None
    attempts: int
    pid: int | None
    host: str | None
    started_at: str | None
    finished_at: str | None
    result_schema: int | None = None


JSON_COLUMNS = ("axes", "config", "environment")


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
            self._add_missing_columns()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open the run store {self.path}: {exc}") from None

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None

    def _add_missing_columns(self) -> None:
        """A store written before ``result_schema`` existed gets the column (its old results read as None)."""
        if "result_schema" in self._columns():
            return
        with self.transaction() as db:
            if "result_schema" not in self._columns():
                db.execute("ALTER TABLE runs ADD COLUMN result_schema INTEGER")

    def _columns(self) -> set[str]:
        return {row["name"] for row in self.db.execute("PRAGMA table_info(runs)")}

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

    def finish(self, run_id: str, result: RunResult, seconds: float, environment: dict) -> None:
        """Record a finished run's typed result (stored as JSON with ``RESULT_SCHEMA``)."""
        if not isinstance(result, RunResult):
            raise TypeError(f"a run's result must be a RunResult (ProbeResult or FinetuneResult), "
                            f"got {type(result).__name__}")
        with self.transaction() as db:
            db.execute(
                """UPDATE runs SET status = 'done', accuracy = ?, seconds = ?, result = ?, result_schema = ?,
                                  environment = ?, model_path = ?, finished_at = ?, pid = NULL WHERE id = ?""",
                (result.accuracy, seconds, json.dumps(dataclasses.asdict(result), default=str), RESULT_SCHEMA,
                 json.dumps(environment), getattr(result, "model_path", None), _now(), run_id),
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


RESULT_CLASSES: dict[str, type[RunResult]] = {"probe": ProbeResult, "finetune": FinetuneResult}


def result_class(runner: str | None) -> type[RunResult] | None:
    """The typed result a runner kind stores."""
    return RESULT_CLASSES.get(runner or "")


def decode_result(text: str | None, schema: int | None, runner: str | None) -> RunResult | None:
    """The typed result stored as ``text``; None without one, or for a layout or runner this version cannot read."""
    cls = result_class(runner)
    if not text or schema != RESULT_SCHEMA or cls is None:
        return None
    try:
        data = json.loads(text)
        return cls.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, TypeError):  # a torn or foreign record must not sink a listing or a report
        return None


def _decode(row: sqlite3.Row) -> RunRow:
    data = dict(row)
    for column in JSON_COLUMNS:
        data[column] = json.loads(data[column]) if data[column] else ({} if column in ("axes", "config") else None)
    data["result"] = decode_result(data["result"], data.get("result_schema"), data["runner"])
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
