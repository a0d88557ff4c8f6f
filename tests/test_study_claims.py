"""Claims on runs: a heartbeat keeps a claim alive, a silent or dead one is taken over, only the holder
writes the result, SIGTERM leaves no run `running`, stale claims are shown and released, --jobs splits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from store_helpers import LABELS, one_error_line, wait_for
from study_fixtures import TINY_BACKBONE, make_image_folder, probe_result, write_study
from transferlab.errors import UserError
from transferlab.study.claims import ClaimPolicy
from transferlab.study.store import RunStore
from transferlab.study.store_backends import parse_address
from transferlab.study.workers import worker_setups

FAST = ClaimPolicy(heartbeat=0.05, expiry=1.0)
SRC = Path(__file__).resolve().parents[1] / "src"


def _from_elsewhere(store: RunStore, run_id: str, seconds_ago: float, host: str = "another-machine") -> None:
    """Make a claim look like another host's, whose last heartbeat was ``seconds_ago``."""
    store.db.execute("UPDATE runs SET host = ?, pid = 12345, claim_token = 'theirs', heartbeat = ? WHERE id = ?",
                     (host, store.now() - seconds_ago, run_id))


def test_a_claim_records_host_pid_token_and_a_heartbeat(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    claim = store.claim("r1", LABELS, {})
    row = store.get("r1")
    assert (row.status, row.host, row.pid, row.claim_token) == ("running", claim.host, os.getpid(), claim.token)
    assert abs(row.heartbeat - store.now()) < 60 and not row.stale


def test_the_heartbeat_thread_keeps_refreshing_the_claim(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    claim = store.claim("r1", LABELS, {})
    first = store.get("r1").heartbeat
    with store.heartbeat(claim):
        wait_for(lambda: store.get("r1").heartbeat > first, 30, "a fresher heartbeat")
    store.db.execute("UPDATE runs SET heartbeat = 0 WHERE id = 'r1'")
    assert store.get("r1").heartbeat == 0  # the thread stopped with its block


def test_a_stale_claim_from_another_host_is_taken_by_a_second_worker(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    store.claim("r1", LABELS, {})
    _from_elsewhere(store, "r1", seconds_ago=5.0)
    assert store.get("r1").stale
    second = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    claim = second.claim("r1", LABELS, {})
    assert claim is not None
    row = second.get("r1")
    assert (row.claim_token, row.attempts, row.host) == (claim.token, 2, claim.host)


def test_a_live_claim_from_another_host_is_not_taken(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    store.claim("r1", LABELS, {})
    _from_elsewhere(store, "r1", seconds_ago=0.0)
    assert not store.get("r1").stale
    assert RunStore(tmp_path / "runs.sqlite", policy=FAST).claim("r1", LABELS, {}) is None
    assert store.get("r1").claim_token == "theirs"


def test_a_container_hostname_or_reused_pid_cannot_block_a_run_forever(tmp_path):
    """Same hostname, a live pid that is not the worker (pid 1 here): only the heartbeat can tell, and does."""
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    store.claim("r1", LABELS, {})
    store.db.execute("UPDATE runs SET pid = 1, claim_token = 'old', heartbeat = ? WHERE id = 'r1'",
                     (store.now() - 5.0,))
    assert store.get("r1").host == __import__("socket").gethostname()
    assert RunStore(tmp_path / "runs.sqlite", policy=FAST).claim("r1", LABELS, {}) is not None


def test_a_dead_pid_on_this_host_frees_its_run_at_once_despite_a_fresh_heartbeat(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=ClaimPolicy(heartbeat=30, expiry=3600))
    store.claim("r1", LABELS, {})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.db.execute("UPDATE runs SET pid = ?, claim_token = 'old' WHERE id = 'r1'", (dead.pid,))
    assert store.get("r1").stale
    assert RunStore(tmp_path / "runs.sqlite").claim("r1", LABELS, {}) is not None


def test_a_worker_whose_claim_was_taken_over_records_nothing(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    mine = store.claim("r1", LABELS, {})
    _from_elsewhere(store, "r1", seconds_ago=5.0)
    store.db.execute("UPDATE runs SET claim_token = ? WHERE id = 'r1'", (mine.token,))  # still mine, but stale
    theirs = RunStore(tmp_path / "runs.sqlite", policy=FAST).claim("r1", LABELS, {})
    assert not store.finish("r1", probe_result(0.1), 1.0, {}, claim=mine)
    assert not store.fail("r1", "late", "", 1.0, {}, claim=mine)
    assert not store.beat(mine)
    assert store.finish("r1", probe_result(0.9), 1.0, {}, claim=theirs)
    assert (store.get("r1").status, store.get("r1").accuracy) == ("done", 0.9)


def test_release_stale_frees_stale_claims_only(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", policy=FAST)
    for run_id in ("old", "live"):
        store.claim(run_id, LABELS, {})
    _from_elsewhere(store, "old", seconds_ago=5.0)
    _from_elsewhere(store, "live", seconds_ago=0.0)
    released = store.release_stale()
    assert [r.id for r in released] == ["old"]
    assert store.get("old").status == "failed" and "stale claim by another-machine" in store.get("old").error
    assert store.get("live").status == "running"


def test_runs_shows_stale_claims_and_releases_them(tmp_path, cli, monkeypatch):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    for run_id in ("old", "live"):
        store.claim(run_id, LABELS, {})
    _from_elsewhere(store, "old", seconds_ago=10_000.0)
    _from_elsewhere(store, "live", seconds_ago=0.0)
    listed = cli("runs", "--store", str(path), "--json")
    assert {r["id"]: r["stale"] for r in json.loads(listed.stdout)} == {"old": True, "live": False}
    table = cli("runs", "--store", str(path))
    assert "stale" in table.stdout and "another-machine pid 12345" in table.stdout
    assert [r["id"] for r in json.loads(cli("runs", "--store", str(path), "--status", "stale", "--json").stdout)] == ["old"]
    assert [r["id"] for r in json.loads(cli("runs", "--store", str(path), "--status", "running", "--json").stdout)] == ["live"]
    released = cli("runs", "--store", str(path), "--release-stale")
    assert released.returncode == 0 and "released 1 stale claim(s)" in released.stdout
    assert store.get("old").status == "failed" and store.get("live").status == "running"


def test_claim_timings_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_SECONDS", "2")
    monkeypatch.setenv("TRANSFERLAB_CLAIM_EXPIRY_SECONDS", "7")
    assert ClaimPolicy.from_env() == ClaimPolicy(2.0, 7.0)
    monkeypatch.setenv("TRANSFERLAB_CLAIM_EXPIRY_SECONDS", "1")
    with pytest.raises(UserError, match="longer than the heartbeat"):
        ClaimPolicy.from_env()
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_SECONDS", "soon")
    with pytest.raises(UserError, match="TRANSFERLAB_HEARTBEAT_SECONDS must be a number"):
        ClaimPolicy.from_env()


def test_an_expiry_from_the_environment_decides_staleness(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    store.claim("r1", LABELS, {})
    _from_elsewhere(store, "r1", seconds_ago=100.0)
    monkeypatch.setenv("TRANSFERLAB_CLAIM_EXPIRY_SECONDS", "1000")
    assert not RunStore(tmp_path / "runs.sqlite").get("r1").stale
    monkeypatch.setenv("TRANSFERLAB_CLAIM_EXPIRY_SECONDS", "50")
    assert RunStore(tmp_path / "runs.sqlite").get("r1").stale


@pytest.mark.parametrize("text, kind, where", [
    ("runs.sqlite", "sqlite", "runs.sqlite"),
    ("sqlite:///rel/runs.sqlite", "sqlite", "rel/runs.sqlite"),
    ("sqlite:////abs/runs.sqlite", "sqlite", "/abs/runs.sqlite"),
    ("postgresql://me@db.example:5433/lab", "postgresql", "postgresql://me@db.example:5433/lab"),
    ("postgres://me:secret@db/lab", "postgresql", "postgres://me:***@db/lab"),
])
def test_store_addresses(text, kind, where):
    address = parse_address(text)
    assert (address.kind, address.shown) == (kind, where)


def test_jobs_share_the_cores_and_take_gpus_round_robin():
    assert [(s.threads, s.cuda_device) for s in worker_setups(2, cores=16, gpus=[])] == [(8, None), (8, None)]
    assert [s.threads for s in worker_setups(4, cores=2, gpus=[])] == [1, 1, 1, 1]
    assert [s.cuda_device for s in worker_setups(3, cores=8, gpus=["0", "1"])] == ["0", "1", "0"]


def _tiny_study(tmp_path: Path, seeds: str = "[0, 1]") -> Path:
    make_image_folder(tmp_path / "data", per_class=6)
    return write_study(tmp_path, f"""
        name: claims
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8}}
        methods: [{{name: logreg, kind: probe, head: logreg}}]
        sweep: {{per_class: [2, 3], seed: {seeds}}}
        """)


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **extra}


def test_study_run_jobs_two_does_every_run_once_on_half_the_threads_each(tmp_path):
    study = _tiny_study(tmp_path)
    store = tmp_path / "runs.sqlite"
    done = subprocess.run([sys.executable, "-m", "transferlab", "study", "run", str(study), "--store", str(store),
                           "--jobs", "2"], capture_output=True, text=True, env=_env(), timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "study claims: 4 run, 0 already done, 0 failed" in done.stdout
    rows = RunStore(store).runs()
    assert len(rows) == 4 and {r.status for r in rows} == {"done"} and {r.attempts for r in rows} == {1}
    assert {r.environment["torch_threads"] for r in rows} == {max(1, os.cpu_count() // 2)}
    assert "[worker 1]" in done.stderr or "[worker 2]" in done.stderr


def test_sigterm_during_study_run_marks_the_run_failed_and_exits_with_one_line(tmp_path):
    make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        name: long
        data: data
        backbones: [{TINY_BACKBONE}]
        methods: [{{name: ft, kind: finetune, epochs: 10000, num_workers: 0, batch_size: 4}}]
        """)  # a run far longer than the test: SIGTERM always lands inside it
    store = tmp_path / "runs.sqlite"
    process = subprocess.Popen([sys.executable, "-m", "transferlab", "study", "run", str(study), "--store",
                                str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(), cwd=tmp_path)
    try:
        wait_for(lambda: store.exists() and RunStore(store).runs(status="running"), 120, "a running run")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    line = one_error_line(err)
    assert line.startswith("error: terminated (SIGTERM): run ") and "marked failed" in line
    [row] = RunStore(store).runs()
    assert (row.status, row.error, row.claim_token) == ("failed", "terminated (SIGTERM)", None)
