"""Where a run store lives: a SQLite file or a PostgreSQL database, behind one small seam.

``RunStore`` writes its SQL once, with ``?`` placeholders; a backend knows the few
things that differ between the two databases: how to connect (read-only or not),
its placeholder, the type of a float column, how a transaction takes its lock,
how a claim reads a row without waiting for another worker's lock, the database's
clock, and how its errors read to a user. Every database error leaves here as one
``UserError`` sentence.

SQLite serialises writers with ``BEGIN IMMEDIATE``: right for one machine, but not
safe on a network filesystem (NFS, SMB), whose locks SQLite cannot trust. Several
hosts share a PostgreSQL database instead, where a claim locks its row with
``SELECT ... FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import UserError


class MissingStore(UserError):
    """A reading command named a store that does not exist (it is never created for reading)."""


TIMEOUT_ENV = "TRANSFERLAB_STORE_TIMEOUT"
DEFAULT_TIMEOUT_S = 5.0  # a store locked longer than this is reported, not waited on


def env_seconds(env: str, default: float, high: float, zero_allowed: bool = False) -> float:
    """Seconds from ``$env`` (``default`` when unset), above 0 (or from 0) and at most ``high``; else one UserError."""
    text = os.environ.get(env)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not ((0 <= value) if zero_allowed else (0 < value)) or not value <= high:  # NaN fails both
        low = "from 0" if zero_allowed else "above 0"
        raise UserError(f"{env} must be a number of seconds {low}, at most {high:g}, got {text!r}")
    return value


def lock_timeout() -> float:
    """Seconds a store waits for another process's lock (``$TRANSFERLAB_STORE_TIMEOUT``, default 5)."""
    return env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, 3600, zero_allowed=True)


@dataclass(frozen=True)
class StoreAddress:
    """A parsed ``--store``: a SQLite path or a PostgreSQL URL (``shown`` hides any password)."""

    kind: str  # sqlite or postgresql
    path: Path | None = None
    url: str | None = None

    @property
    def shown(self) -> str:
        if self.kind == "sqlite":
            return str(self.path)
        parts = urlsplit(self.url or "")
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.url or ""


def parse_address(text: str | os.PathLike) -> StoreAddress:
    """``path``, ``sqlite:///path`` or ``postgresql://user@host:port/db`` (also ``postgres://``)."""
    text = os.fspath(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        if not urlsplit(text).path.strip("/"):
            raise UserError(f"the store URL {text!r} names no database: postgresql://user@host:port/DATABASE")
        return StoreAddress("postgresql", url=text)
    if scheme == "sqlite":
        rest = text.split("://", 1)[1]
        if not rest.startswith("/") or rest == "/":
            raise UserError(f"a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path, got {text!r}")
        return StoreAddress("sqlite", path=Path(rest[1:]).expanduser())
    if scheme:
        raise UserError(f"unknown store URL scheme {scheme!r} in {text!r}: give a file path, sqlite:///PATH "
                        f"or postgresql://user@host:port/db")
    return StoreAddress("sqlite", path=Path(text).expanduser())


class Backend:
    """What differs between databases; ``RunStore`` holds one."""

    kind = ""
    float_type = "REAL"
    claim_lock = ""  # appended to the claim's SELECT

    def __init__(self, address: StoreAddress):
        self.address = address
        self.timeout = lock_timeout()

    def sql(self, text: str) -> str:
        return text

    def schema(self, text: str) -> str:
        return text.replace(" REAL", f" {self.float_type}")

    def begin(self, db) -> None:
        raise NotImplementedError

    def user_error(self, exc: Exception) -> UserError:
        raise NotImplementedError


class SqliteBackend(Backend):
    """A SQLite file in WAL mode; a reading command opens it read-only and never creates it."""

    kind = "sqlite"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"  # seconds since 1970, every SQLite version
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL")

    def connect(self, create: bool, read_only: bool):
        path = self.address.path
        assert path is not None
        if not path.exists():
            if not create:
                raise MissingStore(f"no run store at {path}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create the run store {path}: {exc.strerror}") from None
        elif path.is_dir():
            raise UserError(f"the run store {path} is a folder; give a file (or a postgresql:// URL)")
        elif not path.is_file():  # a FIFO or a device would block or mislead SQLite
            raise UserError(f"the run store {path} is not a regular file")
        if read_only:
            return self._connect_read_only(path)
        db = sqlite3.connect(path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        for pragma in self.PRAGMAS:
            db.execute(pragma)
        return db

    def _connect_read_only(self, path: Path):
        """``mode=ro``; a WAL store in a folder nobody may write is read as immutable (no -shm can be made)."""
        uri = path.resolve().as_uri()
        for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
            db = sqlite3.connect(uri + suffix, uri=True, timeout=self.timeout, isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "readonly" not in str(exc) and "unable to open" not in str(exc):
                    raise
        raise UserError(f"cannot read the run store {path}")

    def begin(self, db) -> None:
        db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks

    def has_table(self, db) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is not None

    def columns(self, db) -> set[str]:
        return {row["name"] for row in db.execute("PRAGMA table_info(runs)")}

    def user_error(self, exc: Exception) -> UserError:
        where, text = self.address.shown, str(exc)
        if "locked" in text:
            return UserError(f"the run store {where} is locked by another process (waited {self.timeout:g} s; "
                             f"{TIMEOUT_ENV} sets the wait)")
        if "disk is full" in text or "disk I/O error" in text:
            return UserError(f"the run store {where}: {text} (earlier runs are kept; free some space and rerun)")
        if "readonly" in text or "read-only" in text:
            return UserError(f"the run store {where} is read-only: it can be listed and reported on, not run into")
        if "malformed" in text or "not a database" in text or isinstance(exc, sqlite3.DatabaseError) and \
                not isinstance(exc, sqlite3.OperationalError):
            return UserError(f"the run store {where} is damaged ({text}); restore it from a copy, or give "
                             f"another --store")
        return UserError(f"the run store {where}: {text}")


class PostgresBackend(Backend):
    """A PostgreSQL database through psycopg 3 (``pip install transferlab[postgres]``)."""

    kind = "postgresql"
    float_type = "DOUBLE PRECISION"
    now_sql = "extract(epoch from clock_timestamp())::double precision"  # the server's clock: no host skew
    claim_lock = " FOR UPDATE SKIP LOCKED"  # a row another worker is claiming is skipped, not waited on

    def __init__(self, address: StoreAddress):
        super().__init__(address)
        try:
            import psycopg
        except ImportError:
            raise UserError("a postgresql:// store needs psycopg: pip install 'transferlab[postgres]'") from None
        self.psycopg = psycopg
        self.errors = (psycopg.Error,)

    def connect(self, create: bool, read_only: bool):
        from psycopg.rows import dict_row

        try:
            db = self.psycopg.connect(self.address.url, autocommit=True, row_factory=dict_row,
                                      connect_timeout=max(1, int(self.timeout)))
        except self.psycopg.Error as exc:
            raise UserError(f"cannot reach the run store {self.address.shown}: {_first_line(exc)}") from None
        db.execute(f"SET lock_timeout = {int(self.timeout * 1000)}")
        if read_only:
            db.execute("SET default_transaction_read_only = on")
        return db

    def sql(self, text: str) -> str:
        return re.sub(r"\?", "%s", text.replace("%", "%%"))

    def begin(self, db) -> None:
        db.execute("BEGIN")

    def create_lock(self, db) -> None:
        """Two workers creating the schema at once would collide on PostgreSQL's catalogue: one at a time."""
        db.execute("SELECT pg_advisory_xact_lock(7153001)")

    def has_table(self, db) -> bool:
        return db.execute("SELECT to_regclass('runs') IS NOT NULL AS present").fetchone()["present"]

    def columns(self, db) -> set[str]:
        rows = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs' "
                          "AND table_schema = current_schema()")
        return {row["column_name"] for row in rows}

    def user_error(self, exc: Exception) -> UserError:
        where = self.address.shown
        errors = self.psycopg.errors
        if isinstance(exc, (errors.LockNotAvailable, errors.DeadlockDetected)):
            return UserError(f"the run store {where} is locked by another process (waited {self.timeout:g} s)")
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            return UserError(f"the run store {where} is read-only here")
        if isinstance(exc, errors.DiskFull):
            return UserError(f"the run store {where}: the server's disk is full (earlier runs are kept)")
        return UserError(f"the run store {where}: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def backend_for(address: StoreAddress) -> Backend:
    return PostgresBackend(address) if address.kind == "postgresql" else SqliteBackend(address)
