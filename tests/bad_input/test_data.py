"""Unusable data folders: classes with no readable image, one image in two classes, folders that cannot be read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bad_input_checks import assert_clean_success, assert_one_error, snapshot
from helpers import make_class_folders

from transferlab.data.layout import load_dataset
from transferlab.errors import UserError

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")


@pytest.fixture
def three(tmp_path) -> Path:
    return make_class_folders(tmp_path / "data", {"a": 6, "b": 6, "c": 6})


def junk_class(root: Path, name: str, files: int = 3, content: bytes = b"not an image") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"{i}.jpg").write_bytes(content)


@pytest.mark.parametrize("content", [b"not an image", b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"],
                         ids=["text", "empty", "png signature only", "jpeg signature only"])
def test_a_class_with_no_readable_image_is_left_out_with_a_warning(three, content, caplog):
    junk_class(three, "z", content=content)
    splits = load_dataset(three)
    assert splits.classes == ["a", "b", "c"]
    assert any("z" in note for note in splits.notes)
    assert any("class z left out" in r.getMessage() for r in caplog.records)


def test_the_probe_command_says_which_class_it_left_out(cli, three, caplog):
    import json

    junk_class(three, "z")
    result = cli("probe", "-d", str(three), *TINY, "--json")
    assert_clean_success(result)
    record = json.loads(result.stdout)
    assert record["classes"] == ["a", "b", "c"]
    assert any("z" in note for note in record["notes"])
    assert [r.levelname for r in caplog.records if "class z left out" in r.getMessage()] == ["WARNING"]


@pytest.mark.parametrize("layout", ["flat", "given splits"])
def test_fewer_than_two_readable_classes_is_one_error_line(cli, tmp_path, layout):
    root = tmp_path / "data"
    base = root / "train" if layout == "given splits" else root
    make_class_folders(base, {"a": 6})
    junk_class(base, "b")
    if layout == "given splits":
        make_class_folders(root / "test", {"a": 3, "b": 3})
    assert_one_error(cli("probe", "-d", str(root), *TINY), "at least two class folders", "b")


def test_a_class_left_out_of_train_is_left_out_of_test_too(tmp_path):
    root = tmp_path / "data"
    make_class_folders(root / "train", {"a": 6, "b": 6})
    junk_class(root / "train", "c")
    make_class_folders(root / "test", {"a": 3, "b": 3, "c": 3})
    splits = load_dataset(root)
    assert splits.classes == ["a", "b"] and {s.label for s in splits.test} == {0, 1}


def _symlinked_class(root):
    (root / "d").symlink_to(root / "a", target_is_directory=True)


def _symlinked_file(root):
    (root / "b" / "copy.png").symlink_to(root / "a" / "a_000.png")


def _hard_link(root):
    os.link(root / "a" / "a_001.png", root / "c" / "linked.png")


def _copied_file(root):
    shutil.copyfile(root / "a" / "a_002.png", root / "b" / "copied.png")


def _copied_in_subfolder(root):
    (root / "c" / "deeper").mkdir()
    shutil.copyfile(root / "b" / "b_003.png", root / "c" / "deeper" / "x.png")


@pytest.mark.parametrize("share", [_symlinked_class, _symlinked_file, _hard_link, _copied_file, _copied_in_subfolder],
                         ids=["symlinked class folder", "symlinked file", "hard link", "copy", "copy in a subfolder"])
def test_one_image_under_two_classes_is_one_error_line_naming_both(cli, three, share, isolated_cache):
    share(three)
    before = snapshot(isolated_cache)
    line = assert_one_error(cli("probe", "-d", str(three), *TINY), "the same image is in two classes")
    assert line.count(str(three)) == 2
    assert snapshot(isolated_cache) == before


def test_the_same_image_twice_in_one_class_is_accepted(three):
    shutil.copyfile(three / "a" / "a_000.png", three / "a" / "again.png")
    assert len(load_dataset(three).classes) == 3


def test_evaluate_refuses_one_image_under_two_classes(cli, three, tmp_path):
    from transferlab.finetune import FinetuneConfig, run_finetune

    model = tmp_path / "m"
    run_finetune(FinetuneConfig(data=str(three), output=str(model), backbone="test_efficientnet", random_init=True,
                                freeze="all", epochs=1, num_workers=0))
    _copied_file(three)
    assert_one_error(cli("evaluate", str(model), "-d", str(three)), "the same image is in two classes")


def _deny(monkeypatch, denied: Path) -> None:
    """Listing ``denied`` fails as without read permission (tests run as root, for whom chmod denies nothing)."""
    real_iterdir, real_walk = Path.iterdir, os.walk

    def iterdir(self):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    def walk(top, topdown=True, onerror=None, followlinks=False):
        for here, dirs, files in real_walk(top, topdown, onerror, followlinks):
            if Path(here) == denied:
                if onerror is not None:
                    onerror(PermissionError(13, "Permission denied", here))
                continue
            yield here, dirs, files

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "walk", walk)


@pytest.mark.parametrize("which", ["class folder", "subfolder of a class", "data folder"])
def test_a_folder_that_cannot_be_read_says_permission_denied(cli, three, monkeypatch, which):
    denied = {"class folder": three / "b", "data folder": three}.get(which)
    if denied is None:
        denied = three / "b" / "inner"
        denied.mkdir()
    _deny(monkeypatch, denied)
    assert_one_error(cli("probe", "-d", str(three), *TINY), f"cannot read folder {denied}: permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder")
def test_a_chmod_000_class_folder_says_permission_denied(cli, three):
    (three / "b").chmod(0)
    try:
        assert_one_error(cli("probe", "-d", str(three), *TINY), "permission denied")
    finally:
        (three / "b").chmod(0o755)


@pytest.mark.parametrize("make", [
    lambda root: os.mkfifo(root / "a" / "pipe.png"),
    lambda root: (root / "a" / "loop").symlink_to(root / "a" / "loop"),
    lambda root: (root / "a" / ".hidden.png").write_bytes(b"junk"),
    lambda root: (root / "a" / "dangling.png").symlink_to(root / "nowhere.png"),
], ids=["fifo", "symlink loop", "hidden file", "dangling link"])
def test_odd_files_in_a_class_are_not_candidates(three, make):
    make(three)
    splits = load_dataset(three)
    paths = [s.path.name for s in splits.train + splits.test + (splits.val or [])]
    assert len(paths) == 18 and not any(name in paths for name in ("pipe.png", "loop", ".hidden.png", "dangling.png"))


def test_a_class_folder_with_no_files_is_one_error_line(cli, three):
    (three / "empty").mkdir()
    assert_one_error(cli("probe", "-d", str(three), *TINY), "has no images")


def test_the_python_api_raises_the_same_user_error(three):
    _copied_file(three)
    with pytest.raises(UserError, match="the same image is in two classes"):
        load_dataset(three)
