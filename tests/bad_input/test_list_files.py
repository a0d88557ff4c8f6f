"""List files (``--data list.csv``) that would leak or that the csv parser cannot read: one ``error: FILE:LINE:``
line, as a class-per-folder layout refuses the same image under two classes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bad_input_checks import assert_one_error, snapshot
from helpers import make_class_folders

from transferlab.data import load_dataset
from transferlab.errors import UserError

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0", "--image-size", "64")


@pytest.fixture
def images(tmp_path) -> Path:
    return make_class_folders(tmp_path / "im", {"x": 4, "y": 4})


def write_list(folder: Path, rows: list[str]) -> Path:
    path = folder / "list.csv"
    path.write_text("\n".join(["path,label", *(f"im/{c}/{c}_{i:03d}.png,{c}" for c in "xy" for i in range(4)),
                               *rows]) + "\n")
    return path  # the 8 sound rows are lines 2-9; ``rows`` start at line 10


def _link(folder: Path) -> str:
    (folder / "im" / "link.png").symlink_to(folder / "im" / "x" / "x_001.png")
    return "im/link.png"


def _hard_link(folder: Path) -> str:
    os.link(folder / "im" / "x" / "x_001.png", folder / "im" / "hard.png")
    return "im/hard.png"


def _copy(folder: Path) -> str:
    shutil.copyfile(folder / "im" / "x" / "x_001.png", folder / "im" / "copy.png")
    return "im/copy.png"


LEAKS = {
    "same path twice": (lambda f: "im/x/x_001.png", "x", "the same image is listed twice"),
    "same file by another relative path": (lambda f: "im/y/../x/x_001.png", "x", "the same image is listed twice"),
    "same file by an absolute path": (lambda f: str(f / "im" / "x" / "x_001.png"), "x",
                                       "the same image is listed twice"),
    "same path, another label": (lambda f: "im/x/x_001.png", "y", "the same image is in two classes"),
    "a symlink, another label": (_link, "y", "the same image is in two classes"),
    "a symlink, same label": (_link, "x", "the same image is listed twice"),
    "a hard link, another label": (_hard_link, "y", "the same image is in two classes"),
    "a copy, another label": (_copy, "y", "the same image is in two classes"),
}


@pytest.mark.parametrize("case", list(LEAKS))
def test_an_image_listed_twice_or_under_two_labels_is_one_error_line(cli, tmp_path, images, case, isolated_cache):
    make_path, label, message = LEAKS[case]
    listed = write_list(tmp_path, [f"{make_path(tmp_path)},{label}"])
    before = snapshot(isolated_cache)
    line = assert_one_error(cli("probe", "-d", str(listed), *TINY), f"{listed}:10: {message}", "x_001.png")
    assert "line 3" in line  # the earlier row: im/x/x_001.png
    assert snapshot(isolated_cache) == before


def test_a_copy_under_the_same_label_is_accepted_as_in_a_folder(tmp_path, images):
    listed = write_list(tmp_path, [f"{_copy(tmp_path)},x"])
    assert sum(load_dataset(listed).counts().values()) == 9


def test_evaluate_refuses_a_list_with_an_image_under_two_labels(cli, tmp_path, images):
    from transferlab.finetune import FinetuneConfig, run_finetune

    model = tmp_path / "m"
    run_finetune(FinetuneConfig(data=str(write_list(tmp_path, [])), output=str(model), backbone="test_efficientnet",
                                random_init=True, freeze="all", epochs=1, num_workers=0, image_size=64))
    before = snapshot(model)
    listed = write_list(tmp_path, ["im/y/y_002.png,x"])
    assert_one_error(cli("evaluate", str(model), "-d", str(listed)), f"{listed}:10: the same image is in two classes")
    assert snapshot(model) == before


def test_a_field_longer_than_the_csv_parser_takes_is_one_error_line_with_its_number(cli, tmp_path, images):
    listed = write_list(tmp_path, ["x" * 200_000 + ".png,x", "im/x/x_000.png,x"])
    assert_one_error(cli("probe", "-d", str(listed), *TINY), f"{listed}:10: ", "a field longer than 131,072 characters")


def test_the_python_api_raises_the_same_user_error(tmp_path, images):
    listed = write_list(tmp_path, ["im/x/x_003.png,y"])
    with pytest.raises(UserError, match="list.csv:10: the same image is in two classes"):
        load_dataset(listed)
