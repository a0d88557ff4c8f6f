"""Two real processes writing a result into one place: exactly one writes it, the other ends with one `error:`
line (exit 2), and the result there is whole and usable."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_input_checks import assert_clean_success, assert_one_error, snapshot
from helpers import make_class_folders

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0", "--freeze", "all", "--batch-size", "4")
MODEL_FILES = {"model.safetensors", "config.json", "transferlab.json"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("concurrency") / "data", {"a": 8, "b": 8})


def start(*args: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TRANSFERLAB_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "transferlab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def finetune(data: Path, out: Path, seed: int, cache: Path, epochs: int = 1) -> subprocess.Popen:
    return start("finetune", "-d", str(data), *TINY, "--epochs", str(epochs), "--seed", str(seed), "-o", str(out),
                 cache=cache)


def locked(folder: Path) -> bool:
    """Whether a process holds the model folder's lock now."""
    return locked_file(folder / ".transferlab.lock")


def locked_file(path: Path) -> bool:
    """Whether a process holds an flock on ``path`` now (tried without waiting, released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def assert_one_usable_model(out: Path, seed: int, data: Path) -> None:
    """``out`` holds exactly one whole model, the one trained with ``seed``, and it loads and predicts."""
    from transferlab.finetune.bundle import load_bundle
    from transferlab.finetune.use import predict_images

    assert {p.name for p in out.iterdir()} == MODEL_FILES
    assert json.loads((out / "transferlab.json").read_text())["training"]["config"]["seed"] == seed
    bundle = load_bundle(out)
    assert bundle.classes == ["a", "b"]
    [prediction] = predict_images(out, [str(next((data / "a").iterdir()))], top_k=2)
    assert {g["label"] for g in prediction["top"]} == {"a", "b"}


def test_two_finetunes_started_at_once_into_one_folder_save_exactly_one_model(data, tmp_path):
    out = tmp_path / "same"
    runs = {seed: finetune(data, out, seed, tmp_path / f"cache-{seed}") for seed in (1, 2)}
    results = {seed: finish(process) for seed, process in runs.items()}
    codes = sorted(r.returncode for r in results.values())
    assert codes == [0, 2], {s: (r.returncode, r.stderr[-2000:]) for s, r in results.items()}
    [winner] = [seed for seed, r in results.items() if r.returncode == 0]
    [loser] = [r for r in results.values() if r.returncode == 2]
    assert_clean_success(results[winner])
    assert_one_error(loser, str(out))
    assert "model saved in" not in loser.stdout
    assert_one_usable_model(out, winner, data)


def test_a_finetune_into_a_folder_another_run_is_training_for_is_refused(data, tmp_path):
    """The race made certain: the first run is stopped (SIGSTOP) while it holds the folder, before it has saved
    anything; the second starts, checks and must be refused; then the first goes on and saves its model."""
    out = tmp_path / "same"
    first = finetune(data, out, 1, tmp_path / "cache-1", epochs=2)
    deadline = time.monotonic() + 240
    while not locked(out) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        assert locked(out), finish(first).stderr
        assert not (out / "transferlab.json").exists()
        before = snapshot(out)
        second = finish(finetune(data, out, 2, tmp_path / "cache-2"))
        assert_one_error(second, "another run is writing a model into", str(out))
        assert snapshot(out) == before
    finally:
        first.send_signal(signal.SIGCONT)
    assert_clean_success(finish(first))
    assert_one_usable_model(out, 1, data)


def test_a_finetune_refused_or_failed_before_saving_leaves_no_folder(data, tmp_path):
    from transferlab.errors import UserError
    from transferlab.finetune import FinetuneConfig, run_finetune

    out = tmp_path / "new" / "m"
    (tmp_path / "new").mkdir()
    empty = tmp_path / "empty-data"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(UserError):
        run_finetune(FinetuneConfig(data=str(empty), output=str(out), backbone="test_efficientnet", random_init=True,
                                    freeze="all", epochs=1, num_workers=0))
    assert not out.exists()


def test_a_report_into_a_folder_another_report_is_being_written_into_is_refused(tmp_path):
    """The first `study report` is stopped while it writes; a second into the same --out is refused with one
    line; the first then finishes, and its report is whole."""
    from store_helpers import seed_store

    store = tmp_path / "runs.sqlite"
    ids = ",".join(seed_store(store, count=20))
    out = tmp_path / "reports" / "study"

    def report(cache: str) -> subprocess.Popen:
        return start("study", "report", "--runs", ids, "--store", str(store), "--out", str(out), "--no-images",
                     cache=tmp_path / cache)

    first = report("c1")

    def writing() -> bool:  # the first has made its hidden staging folder: it renders into it now
        return out.parent.is_dir() and any(p.name.startswith(f".{out.name}.new-") for p in out.parent.iterdir())

    deadline = time.monotonic() + 240
    while not writing() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    first.send_signal(signal.SIGSTOP)
    try:
        assert writing(), finish(first).stderr
        second = finish(report("c2"))
        assert_one_error(second, "another report is being written into", str(out))
    finally:
        first.send_signal(signal.SIGCONT)
    assert_clean_success(finish(first))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["comparison.csv", "runs.csv", "confused_pairs.csv", "report.md", "report.html"])
    assert all(f"| r{i} |" in (out / "report.md").read_text() for i in range(20))
    assert sorted(p.name for p in out.parent.iterdir()) == ["study"]  # no lock or staging folder left


def test_a_gradcam_folder_another_predict_is_writing_into_is_refused(data, tmp_path):
    """The first `predict --gradcam DIR` is stopped while it holds DIR; a second into DIR is refused with one line;
    the first then writes every heat map."""
    from transferlab.finetune import FinetuneConfig, run_finetune

    model = tmp_path / "m"
    run_finetune(FinetuneConfig(data=str(data), output=str(model), backbone="test_efficientnet", random_init=True,
                                freeze="all", epochs=1, num_workers=0))
    images = [str(p) for p in sorted(data.rglob("*.png"))][::3]
    out = tmp_path / "heat"

    def predict(cache: str) -> subprocess.Popen:
        return start("predict", str(model), *images, "--gradcam", str(out), cache=tmp_path / cache)

    first = predict("c1")
    deadline = time.monotonic() + 240
    while not locked(out) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    first.send_signal(signal.SIGSTOP)
    try:
        assert locked(out), finish(first).stderr
        second = finish(predict("c2"))
        assert_one_error(second, "another predict is writing Grad-CAM heat maps into", str(out))
    finally:
        first.send_signal(signal.SIGCONT)
    assert_clean_success(finish(first))
    assert len(list(out.glob("*.png"))) == len(images) and len(list(out.iterdir())) == len(images)
    again = finish(predict("c3"))  # and afterwards: a folder of heat maps is never written into again
    assert_one_error(again, "not an empty folder")
