"""Full and unwritable disks: one error line where a result is written, the earlier file intact; an optional
cache that cannot be written warns once and the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_checks import assert_clean_success, assert_one_error, fill_disk, snapshot
from helpers import make_class_folders

from transferlab.errors import UserError

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("disks") / "data", {"a": 6, "b": 6})


def finetune_args(data, out, *extra):
    return ("finetune", "-d", str(data), *TINY, "--freeze", "all", "--epochs", "2", "-o", str(out), *extra)


def test_a_full_disk_while_checkpointing_is_one_line_and_saves_no_model(cli, data, tmp_path, monkeypatch):
    fill_disk(monkeypatch)  # torch.save's zip writer meets ENOSPC from the kernel
    out = tmp_path / "m"
    line = assert_one_error(cli(*finetune_args(data, out)), "cannot write", "checkpoint")
    assert "inline_container" not in line
    assert not (out / "transferlab.json").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_a_full_disk_while_saving_the_model_is_one_line(cli, data, tmp_path, monkeypatch):
    import transferlab.finetune.bundle as bundle

    real = bundle.atomic_path

    def full_for_weights(path):
        if Path(path).name == "model.safetensors":
            fill_disk(monkeypatch)
        return real(path)

    monkeypatch.setattr(bundle, "atomic_path", full_for_weights)
    out = tmp_path / "m"
    assert_one_error(cli(*finetune_args(data, out)), "cannot write", "model.safetensors", "no space left")
    assert not (out / "transferlab.json").exists() and not (out / "model.safetensors").exists()


def test_after_a_full_disk_the_interrupted_run_resumes(cli, data, tmp_path, monkeypatch):
    """The first epoch's checkpoint survives a full disk at the second; --resume then finishes the run."""
    import transferlab.engine.callbacks as callbacks

    real, calls = callbacks.save_checkpoint, []

    def count(folder, state):
        calls.append(state["epoch"])
        return real(folder, state)

    monkeypatch.setattr(callbacks, "save_checkpoint", count)
    fill_disk(monkeypatch, when=lambda: len(calls) == 2)  # the second epoch's checkpoint meets a full disk
    out = tmp_path / "m"
    first = cli(*finetune_args(data, out))
    assert_one_error(first, "cannot write", "checkpoint.pt")
    checkpoint = snapshot(out / "checkpoint.pt")
    assert checkpoint
    calls.clear()
    assert_clean_success(cli(*finetune_args(data, out, "--resume")))
    assert json.loads((out / "transferlab.json").read_text())["classes"] == ["a", "b"]


def test_save_checkpoint_on_a_full_disk_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
    import torch

    from transferlab.engine.callbacks import CHECKPOINT_NAME, save_checkpoint

    save_checkpoint(tmp_path, {"epoch": 0, "w": torch.zeros(3)})
    before = snapshot(tmp_path)
    fill_disk(monkeypatch)
    with pytest.raises(UserError, match="cannot write .*checkpoint"):
        save_checkpoint(tmp_path, {"epoch": 1, "w": torch.ones(1000)})
    assert snapshot(tmp_path) == before and (tmp_path / CHECKPOINT_NAME).exists()


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_finetune_into_an_unwritable_folder_fails_before_training(cli, data, tmp_path, where):
    if where == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "m"
    else:
        out = Path("/proc/transferlab-test-model")
    result = cli(*finetune_args(data, out))
    assert_one_error(result, "cannot write the model folder")
    assert "epoch " not in result.stdout + result.stderr


def _probe_accuracy(cli, data, *extra) -> float:
    result = cli(*extra, "probe", "-d", str(data), *TINY, "--json")
    assert_clean_success(result)
    return json.loads(result.stdout)["accuracy"]


@pytest.mark.parametrize("how", ["cache folder under a file", "full disk", "read-only disk"])
def test_an_unwritable_feature_cache_warns_once_and_the_probe_goes_on(cli, data, tmp_path, monkeypatch, caplog, how):
    import errno
    import os

    expected = _probe_accuracy(cli, data, "--cache-dir", str(tmp_path / "fresh"))
    cache_dir = tmp_path / "cache"
    if how == "cache folder under a file":
        (tmp_path / "file").write_text("x")
        cache_dir = tmp_path / "file" / "cache"
    elif how == "full disk":
        fill_disk(monkeypatch)
    else:
        import transferlab.storage as storage

        def read_only(*args, **kwargs):  # what creating a file on a read-only file system does
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        monkeypatch.setattr(storage.tempfile, "mkstemp", read_only)
    caplog.clear()
    assert _probe_accuracy(cli, data, "--cache-dir", str(cache_dir)) == expected
    warnings = [r for r in caplog.records if "feature cache not written" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_an_unwritable_cache_for_the_builtin_digits_is_one_line(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    assert_one_error(cli("--cache-dir", str(tmp_path / "file" / "c"), "probe", "-d", "digits", *TINY),
                     "cannot write the built-in digits", "--cache-dir")


def test_export_on_a_full_disk_keeps_the_earlier_export(cli, data, tmp_path, monkeypatch):
    out = tmp_path / "m"
    assert_clean_success(cli(*finetune_args(data, out)))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"earlier export")
    fill_disk(monkeypatch)
    assert_one_error(cli("export", str(out), "--format", "onnx", "-o", str(target)), "cannot write")
    assert target.read_bytes() == b"earlier export"


def test_an_export_that_fails_its_parity_check_keeps_the_earlier_export(cli, data, tmp_path, monkeypatch):
    import transferlab.finetune.export as export

    out = tmp_path / "m"
    assert_clean_success(cli(*finetune_args(data, out)))
    target = tmp_path / "model.pt"
    target.write_bytes(b"earlier export")
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # every export now differs "too much"
    assert_one_error(cli("export", str(out), "--format", "torchscript", "-o", str(target)), "differs from PyTorch")
    assert target.read_bytes() == b"earlier export"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
