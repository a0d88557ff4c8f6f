"""Saved models: a damaged or hostile bundle is one clear UserError, never a traceback, a hang or a download."""

from __future__ import annotations

import json
import os

import pytest

from transferlab.errors import UserError
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from helpers import make_class_folders

    root = tmp_path_factory.mktemp("bundle")
    data = make_class_folders(root / "data", {"a": 10, "b": 10})
    run_finetune(FinetuneConfig(data=str(data), output=str(root / "m"), backbone="test_resnet", random_init=True,
                                freeze="all", epochs=1, num_workers=0))
    return root / "m"


def copy_of(saved, tmp_path):
    import shutil

    return shutil.copytree(saved, tmp_path / "copy")


def edit_meta(folder, change):
    meta = json.loads((folder / "transferlab.json").read_text())
    change(meta)
    (folder / "transferlab.json").write_text(json.dumps(meta))


def test_a_saved_bundle_loads(saved):
    assert load_bundle(saved).classes == ["a", "b"]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_weights_are_one_user_error(saved, tmp_path, damage):
    folder = copy_of(saved, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(4096)}[damage])
    with pytest.raises(UserError, match="cannot load weights"):
        load_bundle(folder)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(classes="ab"), "classes must be a list"),
    (lambda m: m.update(classes=["a", "a"]), "classes must be a list"),
    (lambda m: m.update(classes=[str(i) for i in range(200_000)]), "classes must be a list"),
    (lambda m: m["head"].update(spec=3), "head must give"),
    (lambda m: m["head"].update(pooling="median"), "head must give"),
    (lambda m: m["backbone"].update(timm_name=None), "backbone.timm_name"),
    (lambda m: m["backbone"].update(timm_name="no_such_net"), "does not have"),
    (lambda m: m["preprocessing"].update(input_size=[3, 100000, 100000]), "input_size"),
    (lambda m: m.update(format="transferlab-bundle/1"), "saved by transferlab 0.1"),
    (lambda m: m.update(format="other"), "is not a transferlab-bundle/3"),
])
def test_a_description_of_the_wrong_shape_is_one_user_error(saved, tmp_path, change, message):
    folder = copy_of(saved, tmp_path)
    edit_meta(folder, change)
    with pytest.raises(UserError, match=message):
        load_bundle(folder)


def test_weights_that_are_not_a_regular_file_are_refused_without_reading(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")  # reading it would hang
    with pytest.raises(UserError, match="regular file"):
        load_bundle(folder)


def test_a_description_that_is_not_json_is_one_user_error(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "transferlab.json").write_text("{not json")
    with pytest.raises(UserError, match="not a transferlab model description"):
        load_bundle(folder)
