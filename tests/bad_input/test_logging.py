"""``--log tensorboard|mlflow`` into a log folder that cannot be written (a file, a read-only mount): one
`error:` line naming the folder, exit 2, before the run computes anything, never the logging package's
traceback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from bad_input_checks import assert_one_error, snapshot
from helpers import make_class_folders
from store_helpers import mounted
from study_fixtures import TINY_BACKBONE, write_study

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                        reason=f"{name} is not installed"))
            for name in ("tensorboard", "mlflow")]

# mlflow 3.17's SQL store with SQLAlchemy 2.1 (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("logging") / "data", {"a": 6, "b": 6})


@pytest.fixture(params=["a file", "read-only"])
def log_dir(request, tmp_path):
    """A --log-dir that is a file, or a folder on a read-only mount (even root cannot write it)."""
    if request.param == "a file":
        path = tmp_path / "logs"
        path.write_text("my notes\n")
        yield path
        return
    source = tmp_path / "source"
    (source / "old").mkdir(parents=True)
    (source / "old" / "events").write_text("earlier logs\n")
    with mounted("ro-bind", tmp_path / "ro", source) as target:
        try:
            (target / "probe").touch()
        except OSError:
            yield target
            return
        pytest.skip("the read-only mount is writable here")


def run_args(command: str, data: Path, tmp_path: Path) -> list[str]:
    if command == "probe":
        return ["probe", "-d", str(data), *TINY]
    if command == "finetune":
        return ["finetune", "-d", str(data), *TINY, "--epochs", "1", "-o", str(tmp_path / "model")]
    study = write_study(tmp_path, f"""
        name: logged
        data: {data}
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8}}
        methods: [{{name: logreg, kind: probe, head: logreg}}]
        """)
    return ["study", "run", str(study), "--store", str(tmp_path / "runs.sqlite")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("command", ["probe", "finetune", "study"])
def test_an_unwritable_log_dir_is_one_line_before_any_work(cli, data, tmp_path, monkeypatch, log_dir, backend,
                                                            command):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    before = snapshot(log_dir)
    result = cli(*run_args(command, data, tmp_path), "--log", backend, "--log-dir", str(log_dir))
    assert_one_error(result, "cannot write the log folder", str(log_dir))
    assert snapshot(log_dir) == before
    assert not list(cache.rglob("*.np*"))  # no feature was computed
    assert not (tmp_path / "model").exists() and not (tmp_path / "runs.sqlite").exists()
    assert "epoch" not in result.stdout
