"""The run store's bad inputs: missing, mistyped, damaged, locked, read-only and full stores, bad URLs and
settings. Each ends with exit 2 and one `error:` line (or, where documented, works), never a traceback, and
leaves the runs stored earlier as they were."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from store_helpers import (
    PostgresServer,
    checkpoint,
    damage_pages_after_the_first,
    digest,
    mounted,
    one_error_line,
    seed_store,
    stored_accuracies,
)
from study_fixtures import TINY_BACKBONE, make_image_folder, write_study

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def study(tmp_path):
    """A study of two tiny probe runs."""
    make_image_folder(tmp_path / "data", per_class=4)
    return str(write_study(tmp_path, f"""
        name: bad-store
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8}}
        methods: [{{name: logreg, kind: probe, head: logreg}}]
        sweep: {{seed: [0, 1]}}
        """))


@pytest.fixture
def seeded(tmp_path):
    """A store with three finished runs, and their accuracies."""
    path = tmp_path / "runs.sqlite"
    return path, seed_store(path, count=3)


@pytest.fixture
def damaged(tmp_path):
    """A store whose pages after the schema page are garbage (its bytes, to check nothing rewrites it)."""
    path = tmp_path / "runs.sqlite"
    seed_store(path, count=40)
    damage_pages_after_the_first(path)
    return path, digest(path)


def bad(result, *fragments: str) -> str:
    """Exit 2 and exactly one error line, holding every fragment."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = one_error_line(result.stderr)
    for fragment in fragments:
        assert fragment in line, line
    return line


def cli_subprocess(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transferlab", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1",
                                                     **(env or {})})


# -- a reading command never creates a store ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [["runs"], ["runs", "--json"], ["runs", "--status", "stale"],
                                  ["runs", "--release-stale"], ["study", "report", "--runs", "r0", "--no-images"]])
def test_a_mistyped_store_for_a_reading_command_is_not_created(cli, tmp_path, args):
    path = tmp_path / "runz.sqlite"
    bad(cli(*args, "--store", str(path)), f"no run store at {path}")
    assert not path.exists() and not list(tmp_path.glob("runz*"))


def test_a_mistyped_store_for_a_study_report_is_not_created(cli, tmp_path, study):
    path = tmp_path / "typo.sqlite"
    bad(cli("study", "report", study, "--store", str(path), "--out", str(tmp_path / "rep"), "--no-images"),
        "no run store at")
    assert not path.exists()


def test_a_mistyped_store_from_the_environment_is_not_created(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_STORE", str(tmp_path / "env-typo.sqlite"))
    bad(cli("runs"), "no run store at")
    assert not (tmp_path / "env-typo.sqlite").exists()


@pytest.mark.parametrize("args", [["runs"], ["runs", "--release-stale"]])
def test_a_store_in_a_missing_folder_makes_no_folder(cli, tmp_path, args):
    bad(cli(*args, "--store", str(tmp_path / "nofolder" / "runs.sqlite")), "no run store at")
    assert not (tmp_path / "nofolder").exists()


def test_a_dangling_symlink_store_is_not_followed_into_a_new_file(cli, tmp_path):
    (tmp_path / "link.sqlite").symlink_to(tmp_path / "target.sqlite")
    bad(cli("runs", "--store", str(tmp_path / "link.sqlite")), "no run store at")
    assert not (tmp_path / "target.sqlite").exists()


def test_a_sqlite_file_of_another_program_is_no_run_store_and_is_left_alone(cli, tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    before = digest(path)
    bad(cli("runs", "--store", str(path)), "no run store at", "no runs table")
    assert digest(path) == before


# -- not a store file at all ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["runs", "study run"])
def test_a_folder_given_as_the_store(cli, tmp_path, study, command):
    folder = tmp_path / "afolder"
    folder.mkdir()
    args = ["runs"] if command == "runs" else ["study", "run", study]
    bad(cli(*args, "--store", str(folder)), "is a folder")
    assert list(folder.iterdir()) == []


def test_a_fifo_given_as_the_store_does_not_hang(cli, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    bad(cli("runs", "--store", str(tmp_path / "pipe")), "not a regular file")


@pytest.mark.parametrize("command", ["runs", "study run"])
def test_a_text_file_given_as_the_store_is_reported_and_kept(cli, tmp_path, study, command):
    path = tmp_path / "notes.txt"
    path.write_text("my notes, not a database\n" * 200)
    args = ["runs"] if command == "runs" else ["study", "run", study]
    bad(cli(*args, "--store", str(path)), "is damaged", "not a database")
    assert path.read_text() == "my notes, not a database\n" * 200


def test_a_symlink_loop_given_as_the_store_for_a_study_run(cli, tmp_path, study):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    bad(cli("study", "run", study, "--store", str(tmp_path / "loop")), str(tmp_path / "loop"))


# -- a damaged store: one line for every command, at whatever query it shows ---------------------------------------

@pytest.mark.parametrize("args", [["runs"], ["runs", "--json"], ["runs", "--release-stale"],
                                  ["study", "report", "--runs", "r0", "--no-images"]])
def test_a_damaged_store_gives_one_line_for_reading_commands(cli, damaged, args):
    path, before = damaged
    bad(cli(*args, "--store", str(path)), "is damaged", "malformed")
    assert digest(path) == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_damaged_store_gives_one_line_for_study_run(cli, damaged, study, dry_run):
    path, before = damaged
    bad(cli("study", "run", study, "--store", str(path), *(["--dry-run"] if dry_run else [])), "is damaged")
    assert digest(path) == before


def test_a_row_with_torn_json_is_still_listed(cli, seeded):
    path, accuracies = seeded
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET axes = '{\"seed', config = '[1, 2', environment = 'nul' WHERE id = 'r1'")
    db.commit()
    db.close()
    listed = cli("runs", "--store", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert (rows["r1"]["axes"], rows["r1"]["config"], rows["r1"]["accuracy"]) == ({}, {}, accuracies["r1"])


def _edit_result(path: Path, run_id: str, **changes) -> None:
    """Change fields of a stored result's JSON by hand (Python's json writes NaN as ``NaN``)."""
    db = sqlite3.connect(path)
    [text] = db.execute("SELECT result FROM runs WHERE id = ?", (run_id,)).fetchone()
    db.execute("UPDATE runs SET result = ? WHERE id = ?", (json.dumps({**json.loads(text), **changes}), run_id))
    db.commit()
    db.close()


BAD_RESULTS = {
    "accuracy NaN": ({"accuracy": float("nan")}, "accuracy is nan"),
    "accuracy 7.5": ({"accuracy": 7.5}, "accuracy is 7.5"),
    "accuracy a word": ({"accuracy": "high"}, "accuracy is 'high'"),
    "test images negative": ({"test_images": -4}, "test_images is -4"),
    "confusion matrix torn": ({"confusion_matrix": [[1, 2]]}, "confusion_matrix"),
    "confusion matrix NaN": ({"confusion_matrix": [[2, 0, 0], [0, float("nan"), 2], [0, 0, 2]]}, "confusion_matrix"),
    "predictions without labels": ({"predictions": [{"path": "x.png"}]}, "predictions"),
    "history infinite": ({"history": [{"epoch": 1, "val_accuracy": float("inf")}]}, "history epoch 1"),
}


@pytest.mark.parametrize("bad", list(BAD_RESULTS))
def test_a_report_flags_a_stored_result_that_is_not_valid_and_leaves_it_out(cli, tmp_path, bad):
    path = tmp_path / "runs.sqlite"
    seed_store(path, count=4)
    changes, reason = BAD_RESULTS[bad]
    _edit_result(path, "r1", **changes)
    before = digest(path)
    out = tmp_path / "report"
    done = cli("study", "report", "--runs", "r0,r1,r2,r3", "--store", str(path), "--out", str(out), "--no-images")
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    findings = (out / "report.md").read_text().split("## Comparison")[0]
    [flag] = [line.replace("\\", "") for line in findings.splitlines() if "| invalid |" in line]
    assert "r1" in flag and reason in flag
    compared = (out / "comparison.csv").read_text()
    assert "r0" in compared and "r2" in compared and "r1" not in compared
    assert "| invalid |" in (out / "report.md").read_text().split("## Runs")[1]
    assert digest(path) == before
    listed = cli("runs", "--store", str(path))
    assert listed.returncode == 0 and "Traceback" not in listed.stdout + listed.stderr


def test_a_report_flags_an_accuracy_column_that_disagrees_with_its_result(cli, tmp_path):
    path = tmp_path / "runs.sqlite"
    seed_store(path, count=3)
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET accuracy = 7.5 WHERE id = 'r2'")
    db.commit()
    db.close()
    out = tmp_path / "report"
    done = cli("study", "report", "--runs", "r0,r1,r2", "--store", str(path), "--out", str(out), "--no-images")
    assert done.returncode == 0, done.stderr
    [flag] = [line.replace("\\", "") for line in (out / "report.md").read_text().splitlines()
              if "| invalid |" in line][:1]
    assert "r2" in flag and "accuracy column (7.5)" in flag
    assert "r2" not in (out / "comparison.csv").read_text()


# -- a locked store: a short bounded wait, then one line --------------------------------------------------------------

class Locker:
    """Another process holding the store's lock (``BEGIN EXCLUSIVE``) until closed."""

    def __init__(self, path: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
             "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "locked"

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture
def short_wait(monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_STORE_TIMEOUT", "0.3")


def test_a_locked_store_stops_a_study_run_after_a_short_wait(cli, seeded, study, short_wait):
    path, accuracies = seeded
    locker = Locker(path)
    try:
        bad(cli("study", "run", study, "--store", str(path)), "is locked by another process", "waited 0.3 s")
    finally:
        locker.close()
    assert stored_accuracies(path) == accuracies


def test_a_locked_store_stops_a_release_after_a_short_wait(cli, seeded, short_wait):
    path, accuracies = seeded
    locker = Locker(path)
    try:
        bad(cli("runs", "--store", str(path), "--release-stale"), "is locked by another process")
    finally:
        locker.close()
    assert stored_accuracies(path) == accuracies


def test_a_store_being_written_is_still_listed(cli, seeded, short_wait):
    """In WAL mode a writer does not block readers: `runs` lists the committed runs."""
    path, accuracies = seeded
    locker = Locker(path)
    try:
        listed = cli("runs", "--store", str(path), "--json")
    finally:
        locker.close()
    assert listed.returncode == 0 and {r["id"]: r["accuracy"] for r in json.loads(listed.stdout)} == accuracies


def test_a_locked_store_in_rollback_journal_mode_stops_a_listing_after_a_short_wait(cli, seeded, short_wait):
    path, accuracies = seeded
    checkpoint(path)  # journal_mode = DELETE: an exclusive lock blocks readers too
    locker = Locker(path)
    try:
        bad(cli("runs", "--store", str(path)), "is locked by another process")
    finally:
        locker.close()
    assert stored_accuracies(path) == accuracies


# -- a read-only store can be listed and reported on ------------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
    """The seeded store seen through a read-only mount (even root cannot write it)."""
    source = tmp_path / "store"
    source.mkdir()
    accuracies = seed_store(source / "runs.sqlite", count=3)
    checkpoint(source / "runs.sqlite")
    with mounted("ro-bind", tmp_path / "ro", source) as folder:
        probe = folder / "probe"
        try:
            probe.touch()
            probe.unlink()
            pytest.skip("the read-only mount is writable here")
        except OSError:
            pass
        yield folder / "runs.sqlite", accuracies


def test_a_read_only_store_is_listed(cli, read_only):
    path, accuracies = read_only
    listed = cli("runs", "--store", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"]: r["accuracy"] for r in json.loads(listed.stdout)} == accuracies


def test_a_read_only_store_is_reported_on(cli, read_only, tmp_path):
    path, _ = read_only
    report = cli("study", "report", "--runs", "r0,r2", "--store", str(path), "--out", str(tmp_path / "rep"),
                 "--no-images")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "report.html").is_file()


def test_a_read_only_store_refuses_a_study_run_with_one_line(cli, read_only, study):
    path, accuracies = read_only
    bad(cli("study", "run", study, "--store", str(path)), "read-only")
    assert stored_accuracies(path) == accuracies


def test_a_read_only_store_refuses_a_release_with_one_line(cli, read_only):
    path, accuracies = read_only
    bad(cli("runs", "--store", str(path), "--release-stale"), "read-only")
    assert stored_accuracies(path) == accuracies


# -- a full disk ---------------------------------------------------------------------------------------------------------

def test_a_full_disk_stops_the_study_with_one_line_and_keeps_earlier_runs(tmp_path, study):
    with mounted("tmpfs", tmp_path / "small", size="1m") as folder:
        path = folder / "runs.sqlite"
        accuracies = seed_store(path, count=3)
        holder = sqlite3.connect(path)  # keeps the store's -shm in place while the disk is full
        holder.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = folder / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
        try:
            result = cli_subprocess("study", "run", study, "--store", str(path), cwd=tmp_path)
        finally:
            filler.unlink()
        holder.close()
        bad(result, "full", "earlier runs are kept")
        assert stored_accuracies(path) == accuracies


def test_a_store_that_reaches_its_size_limit_stops_the_study_with_one_line(cli, seeded, study, monkeypatch):
    from transferlab.study.store_backends import SqliteBackend

    path, accuracies = seeded
    # SQLite's own "database or disk is full": no page may be added beyond the store's size now
    monkeypatch.setattr(SqliteBackend, "PRAGMAS", (*SqliteBackend.PRAGMAS, "PRAGMA max_page_count = 1"))
    bad(cli("study", "run", study, "--store", str(path)), "database or disk is full", "earlier runs are kept")
    monkeypatch.undo()
    assert stored_accuracies(path) == accuracies


# -- store URLs and settings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, fragment", [
    ("mysql://me@db/lab", "unknown store URL scheme 'mysql'"),
    ("sqlite://runs.sqlite", "sqlite:///relative/path"),
    ("postgresql://me@127.0.0.1:5432/", "names no database"),
])
def test_a_malformed_store_url(cli, tmp_path, url, fragment):
    bad(cli("runs", "--store", url), fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_postgresql_store_nobody_listens_on(cli, tmp_path, short_wait):
    import socket

    with socket.socket() as s:  # a port just freed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad(cli("runs", "--store", f"postgresql://me:secret@127.0.0.1:{port}/lab"), "cannot reach the run store",
        "me:***@")


@pytest.mark.parametrize("variable, value, fragment", [
    ("TRANSFERLAB_STORE_TIMEOUT", "soon", "TRANSFERLAB_STORE_TIMEOUT must be a number"),
    ("TRANSFERLAB_STORE_TIMEOUT", "-1", "TRANSFERLAB_STORE_TIMEOUT must be a number"),
    ("TRANSFERLAB_HEARTBEAT_SECONDS", "0", "TRANSFERLAB_HEARTBEAT_SECONDS must be a number"),
    ("TRANSFERLAB_CLAIM_EXPIRY_SECONDS", "nan", "TRANSFERLAB_CLAIM_EXPIRY_SECONDS must be a number"),
    ("TRANSFERLAB_CLAIM_EXPIRY_SECONDS", "10", "must be longer than the heartbeat"),
])
def test_bad_store_settings_stop_a_study_run_with_one_line(cli, seeded, study, monkeypatch, variable, value, fragment):
    path, accuracies = seeded
    monkeypatch.setenv(variable, value)
    bad(cli("study", "run", study, "--store", str(path)), fragment)
    monkeypatch.undo()
    assert stored_accuracies(path) == accuracies


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_bad_jobs(cli, seeded, study, jobs):
    path, accuracies = seeded
    bad(cli("study", "run", study, "--store", str(path), "--jobs", jobs), "--jobs")
    assert stored_accuracies(path) == accuracies


def test_a_damaged_store_gives_one_line_in_a_real_process_too(damaged, study, tmp_path):
    path, before = damaged
    bad(cli_subprocess("study", "run", study, "--store", str(path), cwd=tmp_path), "is damaged")
    assert digest(path) == before


# -- PostgreSQL ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


def test_a_postgresql_database_without_runs_is_not_turned_into_a_store_by_a_listing(cli, postgres):
    import psycopg

    url = postgres.database()
    bad(cli("runs", "--store", url), "no run store at", "no runs table")
    with psycopg.connect(url) as db:
        assert db.execute("SELECT to_regclass('runs')").fetchone()[0] is None


def test_a_postgresql_database_that_does_not_exist(cli, postgres):
    url = postgres.database().rsplit("/", 1)[0] + "/no_such_database"
    bad(cli("runs", "--store", url), "cannot reach the run store", "no_such_database")


def test_a_postgresql_store_keeps_its_runs_and_lists_them(cli, postgres):
    url = postgres.database()
    accuracies = seed_store(url, count=3)
    listed = cli("runs", "--store", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"]: r["accuracy"] for r in json.loads(listed.stdout)} == accuracies == stored_accuracies(url)
