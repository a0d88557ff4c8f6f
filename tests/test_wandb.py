"""``--log wandb``: what a run logs is read back from W&B's own offline run file.

W&B offline (``WANDB_MODE=offline``) writes each run as one ``run-ID.wandb`` file: a LevelDB-format log
(7-byte header, 32 KiB blocks of checksum/length/type records) of wandb's ``Record`` protobufs. wandb no
longer ships a Python reader, so ``offline_records`` reads the log with the protobuf classes wandb ships.
Every epoch's scalars must equal the result's history, the config the run's parameters, the summary the
final metrics; the figures and the saved model must be logged too.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from test_tracking import EPOCH_KEYS

needs_wandb = pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is None,
                                 reason="wandb is not installed: pip install 'transferlab[wandb]'")
HEADER, BLOCK, FULL, LAST = 7, 32 * 1024, 1, 4


def offline_records(path: Path):
    """wandb's ``Record`` messages in an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", path
    position, parts = HEADER, []
    while position + 7 <= len(raw):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a record header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", raw[position:position + 7])
        parts.append(raw[position + 7:position + 7 + length])
        position += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def item_key(item) -> str:
    return item.key or ".".join(item.nested_key)


def finished_records(path: Path, wait: float = 120.0) -> list:
    """The run file's records once its ``exit`` record is in: W&B's service process writes the file, and under load
    it may still be writing when ``finish()`` has returned in the run's own process."""
    import time

    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + wait
    while True:
        try:
            records = list(offline_records(path))
        except DecodeError:  # a record still being written
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records or list(offline_records(path))
        time.sleep(0.5)


def read_run(folder: Path) -> dict:
    """The one offline run under ``folder``: name, project, config, history rows, summary and artifact names."""
    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    run = {"config": {}, "history": [], "summary": {}, "artifacts": []}
    for record in finished_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["name"], run["project"] = record.run.display_name, record.run.project
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            run["history"].append({item_key(i): json.loads(i.value_json) for i in record.history.item})
            continue
        elif kind == "summary":
            run["summary"].update({item_key(i): json.loads(i.value_json) for i in record.summary.update})
            continue
        elif kind == "artifact":
            run["artifacts"].append((record.artifact.name, record.artifact.type,
                                     sorted(f.path for f in record.artifact.manifest.contents)))
            continue
        else:
            continue
        run["config"].update({item_key(i): json.loads(i.value_json) for i in updates})
    return run


@needs_wandb
def test_finetune_logs_params_epochs_final_metrics_figures_and_model_to_an_offline_wandb_run(
        cli, class_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # --log-dir wins over it
    done = cli("finetune", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init", "--workers", "0",
               "--batch-size", "8", "--epochs", "2", "--freeze", "half", "--early-stopping", "none",
               "-o", str(tmp_path / "model"), "--log", "wandb", "--log-dir", str(tmp_path / "wb"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    run = read_run(tmp_path / "wb")
    assert (run["project"], run["name"]) == ("finetune", "model")
    assert run["config"]["backbone"] == "test_efficientnet"
    assert run["config"]["lr"] == pytest.approx(1e-3)
    assert run["config"]["epochs"] == 2 and run["config"]["freeze"] == "half"
    epochs = [row for row in run["history"] if "val_loss" in row]
    assert [row["_step"] for row in epochs] == [h["epoch"] for h in result["history"]] == [1, 2]
    for key in EPOCH_KEYS:
        assert [row[key] for row in epochs] == pytest.approx([h[key] for h in result["history"]], rel=1e-6), key
    summary = run["summary"]
    assert summary["accuracy"] == pytest.approx(result["accuracy"])
    assert summary["macro_f1"] == pytest.approx(result["macro_f1"])
    assert [summary["accuracy_low"], summary["accuracy_high"]] == pytest.approx(result["accuracy_interval"])
    logged = {k: v for row in run["history"] for k, v in row.items() if k.startswith("figures")}
    assert {k.split(".")[0] for k in logged} == {"figures/learning_curves", "figures/confusion_matrix"}
    assert ("model-model", "model", ["config.json", "model.safetensors", "transferlab.json"]) in run["artifacts"]
    assert not (tmp_path / "elsewhere").exists()


def test_a_missing_wandb_is_one_error_line_with_the_pip_command(cli, class_folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec: not installed
    done = cli("finetune", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init", "--workers", "0",
               "-o", str(tmp_path / "model"), "--log", "wandb")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --log wandb needs the wandb package: pip install 'transferlab[wandb]'"
    assert not (tmp_path / "model").exists()
