"""The run store: every run's config, result, history, timings, environment and claim in one database.

A SQLite file by default (WAL mode, every write in an immediate transaction: several
processes on one machine may run studies into one store at once), or a PostgreSQL
database for several machines (``postgresql://user@host:port/db``). The SQL is
written once; ``store_backends`` holds what differs between the two.

A run is *claimed* before it starts: the claim's row carries the host, pid, a token
and a heartbeat the worker keeps fresh (see ``claims``), so another worker skips a
run that is being worked on and takes over one whose worker died. A result is
written only by the holder of the claim, so a run is never recorded twice.

A result is stored as the JSON of its typed record (``ProbeResult``,
``FinetuneResult`` or, for a rank method, ``RankResult``, by the run's ``runner``) with the version of that layout
(``result_schema``); reading a run gives the typed record back. Reading commands
open the store read-only and never create one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..finetune.result import FinetuneResult
from ..probing.result import ProbeResult
from ..rank.result import RankResult
from ..readback import is_number, result_problem
from ..results import RunResult
from .claims import Claim, ClaimPolicy, Heartbeat, claim_is_stale
from .store_backends import MissingStore, backend_for, parse_address

STORE_ENV = "TRANSFERLAB_STORE"
DEFAULT_STORE = "transferlab-runs.sqlite"
RESULT_SCHEMA = 1  # the layout of the stored result JSON: a RunResult subclass's fields

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,          -- stable hash of the run's config (see study.identity)
    study TEXT,
    method TEXT,
    kind TEXT,                    -- probe, temperature, finetune, scratch, rank
    runner TEXT,                  -- probe, finetune or rank
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
    pid INTEGER,                  -- the claim: which process on which host works on the run
    host TEXT,
    claim_token TEXT,             -- random per claim: only its holder may write the result
    heartbeat REAL,               -- seconds since 1970 on the database's clock, refreshed by the worker
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_study ON runs(study);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""
ADDED_COLUMNS = {"result_schema": "INTEGER", "claim_token": "TEXT", "heartbeat": "REAL"}  # stores from before them
LABEL_COLUMNS = ("study", "method", "kind", "runner", "backbone")


def default_store() -> str:
    """``$TRANSFERLAB_STORE``, else ``transferlab-runs.sqlite`` in the current folder."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def default_store_path() -> Path:
    return Path(default_store()).expanduser()


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
    result: RunResult | RankResult | None  # ProbeResult, FinetuneResult or RankResult; None until done, or stored in a layout not read here
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
    claim_token: str | None = None
    heartbeat: float | None = None
    stale: bool = False  # running, but its worker is gone or silent past the expiry: another may take it
    result_problem: str | None = None  # why a stored result was not read back (readback.result_problem)


RUN_ROW_FIELDS = {f.name for f in dataclasses.fields(RunRow)}
JSON_COLUMNS = ("axes", "config", "environment")


def study_store_location(store: str | None, spec=None) -> str | None:
    """The store a study runs into: ``store`` if given, else the environment's, else the study file's ``store:``
    (relative to the file), else None (the default store)."""
    if store is None and not os.environ.get(STORE_ENV) and spec is not None and spec.store:
        return str(spec.relative(spec.store)) if "://" not in spec.store else spec.store
    return store


class RunStore:
    """One store, whatever the database; ``create=False`` for reading commands (never makes a store)."""

    def __init__(self, location: Path | str | None = None, *, create: bool = True, read_only: bool = False,
                 policy: ClaimPolicy | None = None):
        self.location = str(location) if location else default_store()
        self.address = parse_address(self.location)
        self.backend = backend_for(self.address)
        self.path = self.address.path  # the SQLite file; None for a database server
        self.shown = self.address.shown
        self.read_only = read_only
        self.policy = policy or ClaimPolicy.from_env()
        with self._guard():
            self.db = self.backend.connect(create=create, read_only=read_only)
        try:
            with self._guard():
                present = self.backend.has_table(self.db)
                if not present and (read_only or not create):
                    raise MissingStore(f"no run store at {self.shown} (it holds no runs table)")
                if not present:
                    self._create_schema()
                if not read_only:
                    self._add_missing_columns()
        except BaseException:
            self.db.close()
            raise

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Any database error becomes one sentence for the user (locked, damaged, read-only, disk full...)."""
        try:
            yield
        except self.backend.errors as exc:
            raise self.backend.user_error(exc) from None

    def _execute(self, sql: str, params: Any = ()):
        with self._guard():
            return self.db.execute(self.backend.sql(sql), params)

    def _create_schema(self) -> None:
        with self.transaction():
            if hasattr(self.backend, "create_lock"):
                self.backend.create_lock(self.db)
            for statement in filter(str.strip, self.backend.schema(SCHEMA).split(";")):
                self.db.execute(statement)  # CREATE ... IF NOT EXISTS: safe when two processes race

    def _add_missing_columns(self) -> None:
        """A store written before a column existed gets it (its old rows read as None there)."""
        if set(ADDED_COLUMNS) <= self.backend.columns(self.db):
            return
        with self.transaction():
            have = self.backend.columns(self.db)
            for name, kind in ADDED_COLUMNS.items():
                if name not in have:
                    self.db.execute(self.backend.schema(f"ALTER TABLE runs ADD COLUMN {name} {kind}"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction that holds the store's write lock (SQLite) from its start; errors roll it back."""
        with self._guard():
            self.backend.begin(self.db)
            try:
                yield self.db
            except BaseException:
                with contextlib.suppress(Exception):
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _write(self, db, sql: str, params: Any = ()):
        return db.execute(self.backend.sql(sql), params)

    def now(self) -> float:
        """Seconds since 1970 on the database's clock (the one heartbeats are written with)."""
        row = self._execute(f"SELECT {self.backend.now_sql} AS now").fetchone()
        return float(row["now"])

    # -- the life of a run -----------------------------------------------------
    def claim(self, run_id: str, labels: dict[str, Any], config: dict) -> Claim | None:
        """Claim a run for this process; None if it is done or another live worker has it."""
        claim = Claim(run_id)
        values = [labels.get(k) for k in LABEL_COLUMNS]
        axes, config_text = json.dumps(labels.get("axes", {}), default=str), json.dumps(config, default=str)
        now_sql = self.backend.now_sql
        with self.transaction() as db:
            inserted = self._write(db, f"""
                INSERT INTO runs (id, study, method, kind, runner, backbone, axes, config, status, attempts,
                                  pid, host, claim_token, heartbeat, started_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', 1, ?, ?, ?, {now_sql}, ?)
                ON CONFLICT (id) DO NOTHING""",
                (run_id, *values, axes, config_text, claim.pid, claim.host, claim.token, _now())).rowcount
            if inserted == 1:
                return claim.hold()
            row = self._write(db, f"SELECT status, pid, host, heartbeat, claim_token, {now_sql} AS now FROM runs WHERE id = ?"
                              + self.backend.claim_lock, (run_id,)).fetchone()
            if row is None:
                return None  # another worker holds the row's lock this instant (PostgreSQL)
            if row["status"] == "done":
                return None
            if row["status"] == "running" and not claim_is_stale(row["status"], row["pid"], row["host"],
                                                                 row["heartbeat"], row["now"], self.policy.expiry,
                                                                 row["claim_token"]):
                return None
            self._write(db, f"""
                UPDATE runs SET study = ?, method = ?, kind = ?, runner = ?, backbone = ?, axes = ?, config = ?,
                    status = 'running', attempts = attempts + 1, pid = ?, host = ?, claim_token = ?,
                    heartbeat = {now_sql}, started_at = ?, error = NULL, traceback = NULL WHERE id = ?""",
                (*values, axes, config_text, claim.pid, claim.host, claim.token, _now(), run_id))
            return claim.hold()

    def beat(self, claim: Claim) -> bool:
        """Refresh a claim's heartbeat; False when the claim is no longer this process's."""
        with self.transaction() as db:
            return self._write(db, f"UPDATE runs SET heartbeat = {self.backend.now_sql} "
                                   "WHERE id = ? AND claim_token = ? AND status = 'running'",
                               (claim.run_id, claim.token)).rowcount == 1

    def heartbeat(self, claim: Claim) -> Heartbeat:
        """A running thread that keeps ``claim`` alive, on a connection of its own, until the block ends."""
        other = RunStore(self.location, policy=self.policy)
        return Heartbeat(lambda: other.beat(claim), self.policy.heartbeat, other.close)

    def _drop(self, run_id: str, claim: Claim | None) -> None:
        """This process lets go of the run's claim (every one of its own, without ``claim``)."""
        if claim is not None:
            claim.drop()
            return
        row = self.db.execute(self.backend.sql("SELECT claim_token FROM runs WHERE id = ?"), (run_id,)).fetchone()
        if row is not None and row["claim_token"]:
            Claim(run_id, row["claim_token"]).drop()

    def _holder(self, run_id: str, claim: Claim | None) -> tuple[str, tuple]:
        if claim is None:
            return "id = ?", (run_id,)
        return "id = ? AND claim_token = ?", (run_id, claim.token)

    def finish(self, run_id: str, result: RunResult, seconds: float, environment: dict,
               claim: Claim | None = None) -> bool:
        """Record a finished run's typed result (stored as JSON with ``RESULT_SCHEMA``).

        With ``claim``, only while that claim holds: False (nothing written) if another worker took the run.
        """
        if not isinstance(result, (RunResult, RankResult)):
            raise TypeError(f"a run's result must be a RunResult (ProbeResult or FinetuneResult) or a RankResult, "
                            f"got {type(result).__name__}")
        where, key = self._holder(run_id, claim)
        with self.transaction() as db:
            self._drop(run_id, claim)
            return self._write(db, f"""
                UPDATE runs SET status = 'done', accuracy = ?, seconds = ?, result = ?, result_schema = ?,
                    environment = ?, model_path = ?, finished_at = ?, pid = NULL, claim_token = NULL,
                    heartbeat = NULL WHERE {where}""",
                (getattr(result, "accuracy", None), seconds, json.dumps(dataclasses.asdict(result), default=str), RESULT_SCHEMA,
                 json.dumps(environment), getattr(result, "model_path", None), _now(), *key)).rowcount == 1

    def fail(self, run_id: str, error: str, traceback: str, seconds: float, environment: dict,
             claim: Claim | None = None) -> bool:
        where, key = self._holder(run_id, claim)
        with self.transaction() as db:
            self._drop(run_id, claim)
            return self._write(db, f"""
                UPDATE runs SET status = 'failed', error = ?, traceback = ?, seconds = ?, environment = ?,
                    finished_at = ?, pid = NULL, claim_token = NULL, heartbeat = NULL WHERE {where}""",
                (error, traceback, seconds, json.dumps(environment), _now(), *key)).rowcount == 1

    def release_stale(self, ids: list[str] | None = None) -> list[RunRow]:
        """Mark stale claims (optionally only these run ids) failed, so the next ``study run`` redoes them."""
        released = []
        with self.transaction() as db:
            now = float(self._write(db, f"SELECT {self.backend.now_sql} AS now").fetchone()["now"])
            for row in self._write(db, "SELECT * FROM runs WHERE status = 'running'").fetchall():
                decoded = _decode(row, now, self.policy.expiry)
                if decoded.stale and (ids is None or decoded.id in ids):
                    self._write(db, """UPDATE runs SET status = 'failed', error = ?, finished_at = ?, pid = NULL,
                                       claim_token = NULL, heartbeat = NULL WHERE id = ? AND status = 'running'""",
                                (f"released: a stale claim by {decoded.host} pid {decoded.pid}", _now(), decoded.id))
                    released.append(decoded)
        return released

    # -- reading -----------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        row = self._execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row["status"] if row else None

    def get(self, run_id: str) -> RunRow | None:
        with self._guard():
            row = self.db.execute(self.backend.sql("SELECT * FROM runs WHERE id = ?"), (run_id,)).fetchone()
            return _decode(row, self.now(), self.policy.expiry) if row else None

    def runs(self, ids: list[str] | None = None, *, study: str | None = None, method: str | None = None,
             backbone: str | None = None, status: str | None = None, id_prefix: str | None = None) -> list[RunRow]:
        """Stored runs matching every filter given (ids in the order asked, else oldest first).

        ``status="stale"`` selects running runs whose claim is stale; ``"running"`` the others still running.
        """
        clauses, params = [], []
        stored_status = "running" if status == "stale" else status
        for column, value in (("study", study), ("method", method), ("backbone", backbone),
                              ("status", stored_status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if id_prefix:
            clauses.append("id LIKE ?")
            params.append(id_prefix + "%")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._guard():
            now = self.now()
            found = self.db.execute(self.backend.sql(f"SELECT * FROM runs{where} ORDER BY started_at, id"), params)
            rows = [_decode(r, now, self.policy.expiry) for r in found.fetchall()]
        if status == "stale":
            rows = [r for r in rows if r.stale]
        elif status == "running":
            rows = [r for r in rows if not r.stale]
        if ids is None:
            return rows
        by_id = {r.id: r for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def __iter__(self) -> Iterator[RunRow]:
        return iter(self.runs())


RESULT_CLASSES: dict[str, type] = {"probe": ProbeResult, "finetune": FinetuneResult, "rank": RankResult}


def result_class(runner: str | None) -> type | None:
    """The typed result a runner kind stores."""
    return RESULT_CLASSES.get(runner or "")


def decode_result(text: str | None, schema: int | None, runner: str | None) -> RunResult | RankResult | None:
    """The typed result stored as ``text``; None without one, or for a layout or runner this version cannot read."""
    cls = result_class(runner)
    if not text or schema != RESULT_SCHEMA or cls is None:
        return None
    try:
        data = json.loads(text)
        return cls.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, TypeError, KeyError):  # a torn or foreign record must not sink a listing or a report
        return None


def stored_result_problem(result: RunResult, accuracy: Any) -> str | None:
    """What is wrong with a result read back from the store, its ``accuracy`` column included, or None."""
    problem = result_problem(result)
    if problem is None and accuracy is not None and not (is_number(accuracy) and accuracy == result.accuracy):
        problem = f"its accuracy column ({accuracy!r}) is not its result's ({result.accuracy!r})"
    return problem


def _json_column(text: str | None, empty: Any) -> Any:
    """A JSON column's value; a torn or foreign one reads as empty rather than sinking a listing."""
    if not text:
        return empty
    try:
        value = json.loads(text)
    except ValueError:
        return empty
    return value if empty is None or isinstance(value, type(empty)) else empty


def _decode(row: Any, now: float | None = None, expiry: float | None = None) -> RunRow:
    data = {k: v for k, v in dict(row).items() if k in RUN_ROW_FIELDS}
    for column in JSON_COLUMNS:
        data[column] = _json_column(data.get(column), {} if column in ("axes", "config") else None)
    data["result"] = decode_result(data["result"], data.get("result_schema"), data["runner"])
    if isinstance(data["result"], RunResult):  # (a RankResult has no accuracy to check)
        problem = stored_result_problem(data["result"], data.get("accuracy"))
        if problem:  # edited or damaged in the store: not a result anything may compute with
            data["result"], data["result_problem"] = None, problem
    if now is not None and expiry is not None:
        data["stale"] = claim_is_stale(data["status"], data["pid"], data["host"], data.get("heartbeat"), now, expiry,
                                       data.get("claim_token"))
    return RunRow(**data)
