"""Damaged and hostile saved models: predict, evaluate, export and load_bundle give one clear line.

Never a traceback, a hang on a FIFO, a huge allocation, a download, or a change to the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest
from bad_input_checks import assert_one_error, snapshot
from helpers import make_class_folders

from transferlab.errors import UserError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from transferlab.finetune import FinetuneConfig, run_finetune

    root = tmp_path_factory.mktemp("bundles")
    data = make_class_folders(root / "data", {"a": 6, "b": 6})
    run_finetune(FinetuneConfig(data=str(data), output=str(root / "m"), backbone="test_efficientnet",
                                random_init=True, freeze="all", epochs=1, num_workers=0))
    return root / "m", data


def _meta(change):
    def damage(folder):
        path = folder / "transferlab.json"
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return damage


def _weights(content):
    def damage(folder):
        path = folder / "model.safetensors"
        data = path.read_bytes()
        path.write_bytes(content(data))
    return damage


def _header(header: dict) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text


def _replace(name, make):
    def damage(folder):
        (folder / name).unlink()
        make(folder / name)
    return damage


DAMAGES = {
    "weights truncated": _weights(lambda data: data[: len(data) // 2]),
    "weights empty": _weights(lambda data: b""),
    "weights 7 bytes": _weights(lambda data: data[:7]),
    "weights random bytes": _weights(lambda data: os.urandom(4096)),
    "weights header length huge": _weights(lambda data: struct.pack("<Q", 2**62) + data[8:]),
    "weights claim 9.6 GB": _weights(lambda data: _header({"w": {"dtype": "F32", "shape": [50000, 48000],
                                                                  "data_offsets": [0, 9_600_000_000]}})),
    "weights a pickle": _weights(lambda data: b"\x80\x04\x95" + b"cos\nsystem\n(S'echo hi'\ntR." + data[:64]),
    "weights wrong tensors": _weights(lambda data: _header({"w": {"dtype": "F32", "shape": [1],
                                                                  "data_offsets": [0, 4]}}) + b"\0\0\0\0"),
    "weights a folder": _replace("model.safetensors", lambda p: p.mkdir()),
    "weights a FIFO": _replace("model.safetensors", lambda p: os.mkfifo(p)),
    "weights link to /dev/zero": _replace("model.safetensors", lambda p: p.symlink_to("/dev/zero")),
    "weights missing": lambda folder: (folder / "model.safetensors").unlink(),
    "description missing": lambda folder: (folder / "transferlab.json").unlink(),
    "description a FIFO": _replace("transferlab.json", lambda p: os.mkfifo(p)),
    "description not json": lambda folder: (folder / "transferlab.json").write_text("{not json"),
    "description not utf-8": lambda folder: (folder / "transferlab.json").write_bytes(b"\xff\xfe{\x00"),
    "description a 5000-digit number": lambda folder: (folder / "transferlab.json").write_text(
        '{"format": ' + "9" * 5000 + "}"),
    "description a list": lambda folder: (folder / "transferlab.json").write_text("[1, 2]"),
    "description too large": lambda folder: (folder / "transferlab.json").write_text(" " * (17 * 1024 * 1024)),
    "format missing": _meta(lambda m: m.pop("format")),
    "format 0.1": _meta(lambda m: m.update(format="transferlab-bundle/1")),
    "classes a string": _meta(lambda m: m.update(classes="ab")),
    "classes one": _meta(lambda m: m.update(classes=["a"])),
    "classes repeated": _meta(lambda m: m.update(classes=["a", "a"])),
    "classes numbers": _meta(lambda m: m.update(classes=[1, 2])),
    "classes 200000": _meta(lambda m: m.update(classes=[str(i) for i in range(200_000)])),
    "classes three for two outputs": _meta(lambda m: m.update(classes=["a", "b", "c"])),
    "timm name a number": _meta(lambda m: m["backbone"].update(timm_name=3)),
    "timm name unknown": _meta(lambda m: m["backbone"].update(timm_name="no_such_net")),
    "timm name on the hub": _meta(lambda m: m["backbone"].update(timm_name="hf-hub:timm/resnet18.a1_in1k")),
    "backbone missing": _meta(lambda m: m.pop("backbone")),
    "head spec a number": _meta(lambda m: m["head"].update(spec=5)),
    "head spec huge mlp": _meta(lambda m: m["head"].update(spec="mlp:99999999999")),
    "head spec unknown": _meta(lambda m: m["head"].update(spec="svm")),
    "head dropout a string": _meta(lambda m: m["head"].update(dropout="0.2")),
    "head pooling unknown": _meta(lambda m: m["head"].update(pooling="median")),
    "input size huge": _meta(lambda m: m["preprocessing"].update(input_size=[3, 100000, 100000])),
    "input size two numbers": _meta(lambda m: m["preprocessing"].update(input_size=[3, 160])),
    "input size negative": _meta(lambda m: m["preprocessing"].update(input_size=[3, -160, 160])),
    "preprocessing missing": _meta(lambda m: m.pop("preprocessing")),
    "head dropout NaN": _meta(lambda m: m["head"].update(dropout=float("nan"))),
    "head dropout 7.5": _meta(lambda m: m["head"].update(dropout=7.5)),
    "mean NaN": _meta(lambda m: m["preprocessing"].update(mean=[float("nan"), 0.5, 0.5])),
    "mean two numbers": _meta(lambda m: m["preprocessing"].update(mean=[0.5, 0.5])),
    "std zero": _meta(lambda m: m["preprocessing"].update(std=[0.0, 0.5, 0.5])),
    "std infinite": _meta(lambda m: m["preprocessing"].update(std=[float("inf"), 0.5, 0.5])),
    "crop 0": _meta(lambda m: m["preprocessing"].update(crop_pct=0)),
    "crop a word": _meta(lambda m: m["preprocessing"].update(crop_pct="full")),
    "interpolation unknown": _meta(lambda m: m["preprocessing"].update(interpolation="sinc")),
}


@pytest.fixture
def damaged(saved, tmp_path, request):
    folder = shutil.copytree(saved[0], tmp_path / "model")
    DAMAGES[request.param](folder)
    return folder


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to reach a model hub fails the test (beyond HF_HUB_OFFLINE, which would hide it)."""
    import huggingface_hub
    import timm.models._hub as timm_hub

    def refuse(*args, **kwargs):
        pytest.fail("a saved model's loading tried to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(timm_hub, "hf_hub_download", refuse, raising=False)
    monkeypatch.setattr(timm_hub, "download_cached_file", refuse, raising=False)


@pytest.mark.parametrize("damaged", list(DAMAGES), indirect=True)
def test_predict_on_a_damaged_model_is_one_line_and_changes_nothing(cli, saved, damaged, no_downloads):
    before = snapshot(damaged) if not any(p.is_fifo() for p in damaged.iterdir()) else None
    assert_one_error(cli("predict", str(damaged), str(saved[1] / "a" / "a_000.png")))
    if before is not None:
        assert snapshot(damaged) == before


@pytest.mark.parametrize("damaged", ["weights truncated", "description not json", "classes one",
                                     "timm name on the hub", "input size huge"], indirect=True)
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_evaluate_and_export_on_a_damaged_model_are_one_line(cli, saved, damaged, command, no_downloads):
    before = snapshot(damaged)
    args = ("-d", str(saved[1])) if command == "evaluate" else ("--format", "onnx")
    assert_one_error(cli(command, str(damaged), *args))
    assert snapshot(damaged) == before


@pytest.mark.parametrize("damaged", ["weights claim 9.6 GB", "weights a pickle", "timm name on the hub",
                                     "head spec huge mlp", "weights a FIFO"], indirect=True)
def test_load_bundle_on_a_hostile_model_is_a_user_error(damaged, no_downloads):
    import tracemalloc

    from transferlab.finetune import load_bundle

    tracemalloc.start()
    try:
        with pytest.raises(UserError):
            load_bundle(damaged)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024**2  # refused from the header: nothing of the claimed size is allocated


def test_a_sound_copy_still_loads(saved, no_downloads):
    from transferlab.finetune import load_bundle

    assert load_bundle(saved[0]).classes == ["a", "b"]
