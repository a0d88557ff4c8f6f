"""Results are for sharing: a saved model, an export, a report, the feature cache and the built-in digits take
the modes every other tool gives under the umask (files 0666 & ~umask, folders 0777 & ~umask), never the
private 0600 / 0700 of the temporary files they are written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from bad_input_checks import assert_clean_success
from helpers import make_class_folders
from store_helpers import seed_store

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")
UMASKS = [0o027, 0o077]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("sharing") / "data", {"a": 6, "b": 6})


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask-{m:03o}")
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_shared(root: Path, mask: int) -> None:
    """``root`` and everything under it has the modes ``open()`` and ``mkdir`` give under ``mask``."""
    for path in [root, *root.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert mode(path) == expected, (str(path), oct(mode(path)), oct(expected))


def test_a_saved_model_and_its_export_follow_the_umask(cli, data, tmp_path, umask):
    out = tmp_path / "m"
    assert_clean_success(cli("finetune", "-d", str(data), *TINY, "--freeze", "all", "--epochs", "1", "-o", str(out)))
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "transferlab.json"}
    assert_shared(out, umask)
    assert_clean_success(cli("export", str(out), "--format", "torchscript", "-o", str(tmp_path / "model.pt")))
    assert mode(tmp_path / "model.pt") == 0o666 & ~umask


def test_a_report_follows_the_umask(cli, tmp_path, umask):
    store = tmp_path / "runs.sqlite"
    seed_store(store, count=2)
    out = tmp_path / "report"
    assert_clean_success(cli("study", "report", "--runs", "r0,r1", "--store", str(store), "--out", str(out),
                             "--no-images"))
    assert (out / "report.html").is_file()
    assert_shared(out, umask)


def test_the_feature_cache_and_the_builtin_digits_follow_the_umask(cli, data, tmp_path, umask):
    from transferlab.data.builtin import materialize_digits

    assert_clean_success(cli("--cache-dir", str(tmp_path / "cache"), "probe", "-d", str(data), *TINY))
    features = tmp_path / "cache" / "features"
    assert list(features.rglob("*.np*")) and list(features.glob("*/identity.json"))
    assert_shared(features, umask)
    digits = materialize_digits(tmp_path / "datasets")
    assert len(list(digits.rglob("*.png"))) == 1797
    assert_shared(digits, umask)
