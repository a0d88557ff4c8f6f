"""Dataset folders: the layouts understood, how they are split, and how they are cut down."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from helpers import make_class_folders
from transferlab import UserError, load_dataset
from transferlab.data import load_splits


def per_class(samples) -> Counter:
    return Counter(s.label for s in samples)


def paths(samples) -> set[Path]:
    return {s.path for s in samples}


def test_one_folder_per_class_is_split_into_disjoint_train_val_test_covering_all(class_folders):
    splits = load_splits(class_folders)

    assert splits.classes == ["a", "b", "c"]
    parts = [paths(splits.train), paths(splits.val), paths(splits.test)]
    assert sum(len(p) for p in parts) == 60
    assert set.union(*parts) == set(class_folders.rglob("*.png"))
    assert splits.evaluated_on.startswith("test")


@pytest.mark.parametrize("seed", range(4))
def test_split_is_stratified(class_folders, seed):
    splits = load_splits(class_folders, seed=seed)

    assert per_class(splits.test) == {0: 3, 1: 3, 2: 3}  # 15% of each class's 20
    assert per_class(splits.val) == {0: 3, 1: 3, 2: 3}


def test_labels_follow_the_class_folders(class_folders):
    splits = load_splits(class_folders)

    for sample in splits.train + splits.val + splits.test:
        assert splits.classes[sample.label] == sample.path.parent.name


def test_same_seed_gives_the_same_split(class_folders):
    assert load_splits(class_folders, seed=1).test == load_splits(class_folders, seed=1).test


def test_another_seed_gives_another_split(class_folders):
    assert paths(load_splits(class_folders, seed=1).test) != paths(load_splits(class_folders, seed=2).test)


def test_split_ratios_are_respected(class_folders):
    splits = load_splits(class_folders, ratios=(0.5, 0.0, 0.5))

    assert splits.val is None
    assert len(splits.test) == 30 and len(splits.train) == 30


def test_train_and_val_folders_report_results_on_val(tmp_path):
    make_class_folders(tmp_path / "train", {"ants": 10, "bees": 10})
    make_class_folders(tmp_path / "val", {"ants": 4, "bees": 4}, seed=50)

    splits = load_splits(tmp_path)

    assert splits.evaluated_on == "val/"
    assert paths(splits.test) == set((tmp_path / "val").rglob("*.png"))
    assert paths(splits.train) == set((tmp_path / "train").rglob("*.png"))
    assert splits.val is None


def test_train_and_validation_carves_a_stratified_validation_split_from_train(tmp_path):
    make_class_folders(tmp_path / "train", {"ants": 10, "bees": 10})
    make_class_folders(tmp_path / "val", {"ants": 4, "bees": 4}, seed=50)
    splits = load_splits(tmp_path)

    train, val = splits.train_and_validation(fraction=0.2)

    assert paths(train) | paths(val) == paths(splits.train)
    assert not paths(train) & paths(val)
    assert per_class(val) == {0: 2, 1: 2}
    assert not paths(val) & paths(splits.test)


def test_train_val_test_folders_report_results_on_test_and_keep_val(tmp_path):
    make_class_folders(tmp_path / "train", {"x": 6, "y": 6})
    make_class_folders(tmp_path / "val", {"x": 2, "y": 2}, seed=10)
    make_class_folders(tmp_path / "test", {"x": 3, "y": 3}, seed=20)

    splits = load_splits(tmp_path)

    assert splits.evaluated_on == "test/"
    assert paths(splits.val) == set((tmp_path / "val").rglob("*.png"))
    assert paths(splits.test) == set((tmp_path / "test").rglob("*.png"))
    assert splits.train_and_validation() == (splits.train, splits.val)


def test_validation_folder_is_accepted_as_val(tmp_path):
    make_class_folders(tmp_path / "train", {"x": 6, "y": 6})
    make_class_folders(tmp_path / "validation", {"x": 2, "y": 2}, seed=10)
    make_class_folders(tmp_path / "test", {"x": 3, "y": 3}, seed=20)

    splits = load_splits(tmp_path)

    assert paths(splits.val) == set((tmp_path / "validation").rglob("*.png"))


def test_hidden_files_and_folders_are_ignored(class_folders):
    (class_folders / "a" / ".DS_Store").write_bytes(b"junk")
    (class_folders / ".thumbnails").mkdir()

    splits = load_splits(class_folders)

    assert splits.classes == ["a", "b", "c"]
    assert sum(splits.counts().values()) == 60


def test_per_class_keeps_that_many_training_images_of_each_class(class_folders):
    full = load_dataset(class_folders)
    cut = load_dataset(class_folders, per_class=4)

    assert per_class(cut.train) == {0: 4, 1: 4, 2: 4}
    assert paths(cut.train) <= paths(full.train)
    assert cut.test == full.test


def test_per_class_larger_than_a_class_keeps_all_and_says_so(class_folders):
    cut = load_dataset(class_folders, per_class=1000)

    assert len(cut.train) == len(load_dataset(class_folders).train)
    assert any("fewer than 1000" in note for note in cut.notes)


def test_classes_keeps_those_classes_relabelled_from_zero(class_folders):
    splits = load_dataset(class_folders, classes=["c", "b"])

    assert splits.classes == ["b", "c"]
    for sample in splits.train + splits.val + splits.test:
        assert sample.path.parent.name in ("b", "c")
        assert splits.classes[sample.label] == sample.path.parent.name
    assert set(per_class(splits.train)) == {0, 1}


def test_num_classes_keeps_the_first_classes_in_sorted_order(class_folders):
    splits = load_dataset(class_folders, num_classes=2)

    assert splits.classes == ["a", "b"]
    assert {s.path.parent.name for s in splits.train + splits.test} == {"a", "b"}


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        load_splits(tmp_path / "nowhere")


def test_folder_with_one_class_is_a_user_error(tmp_path):
    make_class_folders(tmp_path / "data", {"only": 10})

    with pytest.raises(UserError, match="at least two class folders"):
        load_splits(tmp_path / "data")


def test_empty_class_folder_is_a_user_error(class_folders):
    (class_folders / "empty").mkdir()

    with pytest.raises(UserError, match="has no images"):
        load_splits(class_folders)


def test_unknown_class_name_is_a_user_error(class_folders):
    with pytest.raises(UserError, match="unknown class 'zebra'"):
        load_dataset(class_folders, classes=["a", "zebra"])


@pytest.mark.parametrize("count", [1, 4])
def test_num_classes_out_of_range_is_a_user_error(class_folders, count):
    with pytest.raises(UserError, match="--num-classes"):
        load_dataset(class_folders, num_classes=count)


def test_per_class_below_one_is_a_user_error(class_folders):
    with pytest.raises(UserError, match="--per-class"):
        load_dataset(class_folders, per_class=0)


def test_test_folder_with_a_class_training_lacks_is_a_user_error(tmp_path):
    make_class_folders(tmp_path / "train", {"x": 6, "y": 6})
    make_class_folders(tmp_path / "test", {"x": 2, "y": 2, "z": 2})

    with pytest.raises(UserError, match="classes that training does not have: z"):
        load_splits(tmp_path)


def test_digits_is_a_built_in_dataset_of_ten_classes(isolated_cache):
    splits = load_dataset("digits")

    assert splits.classes == [str(d) for d in range(10)]
    assert sum(splits.counts().values()) == 1797
    assert splits.root.is_relative_to(isolated_cache)
