"""SIGKILL at a random moment of a real process, then a rerun: the result of an uninterrupted run, and no
half-written file under a real name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bad_input_checks import assert_clean_success, assert_one_error
from helpers import make_class_folders

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")


def start(*args: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFERLAB_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "transferlab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready, limit: float = 120.0) -> bool:
    """SIGKILL ``process`` as soon as ``ready()``; False if it ended first."""
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.01)
    process.kill()
    process.wait()
    return False


def finish(*args: str, cache: Path) -> subprocess.CompletedProcess:
    process = start(*args, cache=cache)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("kills") / "data", {"a": 24, "b": 24})


def test_a_probe_killed_while_caching_features_reruns_to_the_uninterrupted_result(cli, data, tmp_path, monkeypatch):
    args = ("probe", "-d", str(data), *TINY, "--batch-size", "2", "--json")
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "whole"))
    whole = cli(*args)
    assert_clean_success(whole)
    cache = tmp_path / "killed"
    killed = kill_when(start(*args, cache=cache), lambda: len(list(cache.glob("features/*/*/*.npz"))) >= 5)
    assert killed, "the probe ended before it could be killed"
    partial = list(cache.glob("features/*/*/*.npz"))
    for path in partial:  # every file under a real name is whole
        with np.load(path, allow_pickle=False) as entry:
            assert np.isfinite(entry["features"]).all()
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(cache))
    again = cli(*args)
    assert_clean_success(again)
    first, second = json.loads(whole.stdout), json.loads(again.stdout)
    assert second["accuracy"] == first["accuracy"] and second["features_from_cache"] >= len(partial)


def test_a_finetune_killed_after_a_checkpoint_resumes_to_bit_identical_weights(cli, data, tmp_path, monkeypatch):
    def args(out):
        return ("finetune", "-d", str(data), *TINY, "--freeze", "two-stage", "--epochs", "2", "--batch-size", "8",
                "-o", str(out))

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "c"))
    assert_clean_success(cli(*args(tmp_path / "whole")))
    out = tmp_path / "killed"
    killed = kill_when(start(*args(out), cache=tmp_path / "c"), lambda: (out / "checkpoint.pt").exists())
    assert killed and not (out / "transferlab.json").exists()
    assert_one_error(cli(*args(out)), "--resume")  # without --resume: refused, the checkpoint kept
    assert (out / "checkpoint.pt").exists()
    assert_clean_success(cli(*args(out), "--resume"))
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert not (out / "checkpoint.pt").exists()
