"""Refusals that say what is wrong: a path that exists but is not what was asked for, weights that do not fit
(which tensors), a model's ``transferlab.json`` given for its folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from bad_input_checks import assert_clean_success, assert_one_error, snapshot
from helpers import make_class_folders

from transferlab.errors import UserError

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from transferlab.finetune import FinetuneConfig, run_finetune

    root = tmp_path_factory.mktemp("messages")
    data = make_class_folders(root / "data", {"a": 6, "b": 6})
    run_finetune(FinetuneConfig(data=str(data), output=str(root / "m"), backbone="test_efficientnet",
                                random_init=True, freeze="all", epochs=1, num_workers=0))
    return root / "m", data


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _file(path: Path) -> Path:
    path.write_text("text\n")
    return path


# (make the odd path, the command using it, what the line must say)
WRONG_KINDS = {
    "data a FIFO": (_fifo, lambda odd, m, img: ("probe", "-d", odd, *TINY), "is a FIFO (named pipe), not a folder"),
    "data a text file": (_file, lambda odd, m, img: ("evaluate", m, "-d", odd), "is a file, not a folder or a .csv"),
    "weights a FIFO": (_fifo, lambda odd, m, img: ("predict-imagenet", img, "-b", "test_efficientnet",
                                                   "--weights", odd), "is a FIFO (named pipe), not a file"),
    "image a FIFO": (_fifo, lambda odd, m, img: ("predict", m, odd), "is a FIFO (named pipe), not an image file"),
    "imagenet image a folder": (_folder, lambda odd, m, img: ("predict-imagenet", odd, "-b", "test_efficientnet"),
                                "is a folder, not an image file"),
    "model a FIFO": (_fifo, lambda odd, m, img: ("predict", odd, img), "is a FIFO (named pipe): give the model folder"),
    "model its weights file": (None, lambda odd, m, img: ("predict", f"{m}/model.safetensors", img),
                               "is a file: give the model folder"),
}


@pytest.mark.parametrize("case", list(WRONG_KINDS))
def test_a_path_that_exists_as_something_else_is_named_for_what_it_is(cli, saved, tmp_path, case):
    make, command, fragment = WRONG_KINDS[case]
    model, data = saved
    odd = str(make(tmp_path / "odd")) if make else ""
    before = snapshot(model)
    line = assert_one_error(cli(*command(odd, str(model), str(data / "a" / "a_000.png"))), fragment)
    assert "not found" not in line
    assert snapshot(model) == before


def test_a_listed_folder_is_named_a_folder_with_its_line(cli, tmp_path):
    make_class_folders(tmp_path / "im", {"x": 3, "y": 3})
    listed = tmp_path / "list.csv"
    listed.write_text("path,label\nim/x/x_000.png,x\nim/y,y\n")
    assert_one_error(cli("probe", "-d", str(listed), *TINY), f"{listed}:3: image {tmp_path / 'im' / 'y'} is a folder, "
                                                           "not an image file")


def test_a_missing_path_is_still_not_found(cli, tmp_path):
    assert_one_error(cli("probe", "-d", str(tmp_path / "nowhere"), *TINY), "data folder not found")


def test_the_models_transferlab_json_stands_for_its_folder(cli, saved):
    model, data = saved
    image = str(data / "a" / "a_000.png")
    by_folder = cli("predict", str(model), image, "--json")
    by_file = cli("predict", str(model / "transferlab.json"), image, "--json")
    assert_clean_success(by_file)
    assert json.loads(by_file.stdout) == json.loads(by_folder.stdout)


def test_export_of_a_models_transferlab_json_writes_into_its_folder(cli, saved, tmp_path):
    copy = shutil.copytree(saved[0], tmp_path / "m")
    assert_clean_success(cli("export", str(copy / "transferlab.json"), "--format", "torchscript"))
    assert (copy / "model.pt").is_file()


def _refit(folder: Path, change) -> Path:
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    change(state)
    save_file(state, str(weights))
    return weights


def _drop_first(state):
    state.pop(sorted(state)[0])


def _widen_head(state):
    name = next(k for k in sorted(state) if k.endswith("weight") and state[k].ndim == 2)
    state[name] = state[name].new_zeros((state[name].shape[0] + 1, *state[name].shape[1:]))


@pytest.mark.parametrize("change, fragment", [
    (_drop_first, "1 missing tensor(s): "), (_widen_head, "1 tensor(s) of another shape: "),
    (lambda state: state.update(extra=state[sorted(state)[0]].clone()), "1 unexpected tensor(s): extra"),
], ids=["a tensor missing", "a tensor of another shape", "a tensor too many"])
def test_weights_that_do_not_fit_say_which_tensors(cli, saved, tmp_path, change, fragment):
    model, data = saved
    copy = shutil.copytree(model, tmp_path / "m")
    weights = _refit(copy, change)
    line = assert_one_error(cli("predict", str(copy), str(data / "a" / "a_000.png")), f"{weights} do not fit: ",
                            fragment)
    assert len(line) < 600  # compact: names a few tensors, not the model's every key


def test_backbone_weights_that_do_not_fit_say_which_tensors(tmp_path):
    import torch

    from transferlab.backbones import load_backbone

    state = load_backbone("test_efficientnet", random_init=True).model.state_dict()
    state.pop("conv_stem.weight")
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"do not fit: 1 missing tensor\(s\): conv_stem.weight"):
        load_backbone("test_efficientnet", weights=str(path))
