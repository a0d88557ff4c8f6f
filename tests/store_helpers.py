"""Helpers for the run-store tests: a real PostgreSQL server, seeded stores, damaged and read-only stores."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from study_fixtures import probe_result

LABELS = {"study": "s", "method": "m", "kind": "probe", "runner": "probe", "backbone": "b", "axes": {"seed": 1}}


def seed_store(location, count: int = 3):
    """A store holding ``count`` finished probe runs ``r0``, ``r1``...; returns their accuracies by id."""
    from transferlab.study.store import RunStore

    accuracies = {}
    with RunStore(location) as store:
        for i in range(count):
            run_id = f"r{i}"
            store.claim(run_id, {**LABELS, "axes": {"seed": i}}, {"seed": i})
            accuracies[run_id] = round(0.1 + i / 10, 2)
            store.finish(run_id, probe_result(accuracies[run_id], seed=i), 1.0, {"torch": "x"})
    return accuracies


def stored_accuracies(location) -> dict:
    """The finished runs' accuracies, read back through a fresh read-only store."""
    from transferlab.study.store import RunStore

    with RunStore(location, create=False, read_only=True) as store:
        return {r.id: r.accuracy for r in store.runs(status="done")}


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint(path: Path, keep_wal: bool = False) -> None:
    """Fold the WAL into the main file, so the file alone holds every row (then byte-compare or damage it);
    the store goes back to a rollback journal unless ``keep_wal``."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if not keep_wal:
        db.execute("PRAGMA journal_mode = DELETE")
    db.close()


def damage_pages_after_the_first(path: Path) -> None:
    """Garbage over every page but the schema page: the store opens, any query on its runs fails."""
    checkpoint(path, keep_wal=True)  # a store as transferlab leaves it: in WAL mode
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) > 2 * page, "seed more rows: the table must span pages"
    data[page:] = bytes((i * 37 + 11) % 256 for i in range(len(data) - page))
    path.write_bytes(bytes(data))


def one_error_line(stderr: str) -> str:
    """The one ``error:`` line of a failed command, checking there is nothing like a traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@contextlib.contextmanager
def mounted(kind: str, target: Path, source: Path | None = None, size: str = "") -> Iterator[Path]:
    """A read-only bind mount of ``source`` or a small tmpfs at ``target`` (skips where mounting is not allowed)."""
    target.mkdir(parents=True, exist_ok=True)
    if kind == "ro-bind":
        command = ["mount", "--bind", "-o", "ro", str(source), str(target)]
    else:
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]
    if shutil.which("mount") is None or subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(command[:3])}): needs root with CAP_SYS_ADMIN")
    if kind == "ro-bind":  # older util-linux ignores ro on the first bind: remount it read-only
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


# -- a real PostgreSQL server -------------------------------------------------------------------------------------

def _postgres_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free localhost port, run by an unprivileged user when we are root."""

    def __init__(self):
        self.bin = _postgres_bin()
        if self.bin is None:
            pytest.skip("PostgreSQL not installed (Debian's postgresql package; `make test` installs it)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.skip("psycopg not installed: pip install 'transferlab[postgres]'")
        self.folder = Path(tempfile.mkdtemp(prefix="tl-pg-", dir="/tmp"))
        self.data, self.port = self.folder / "data", _free_port()
        self.user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            self.user = "nobody"
            shutil.chown(self.folder, user=self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60",
                  "start")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            self.stop()
            pytest.skip(f"cannot start PostgreSQL ({tool}): {(done.stderr or log).strip()[-300:]}")

    def database(self) -> str:
        """A new empty database on the server: its URL."""
        import psycopg

        name = "tl_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            if self.user:
                command = ["runuser", "-u", self.user, "--", *command]
            subprocess.run(command, capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    """Poll ``condition`` until it returns something true (a deadline to fail by, not a timing check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
