"""Explicit split sizes: per_class is the number of training images for every method; val/test sizes per class."""

from __future__ import annotations

from collections import Counter

import pytest

from helpers import make_class_folders
from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.data import load_dataset
from transferlab.engine.callbacks import early_stopping_of
from transferlab.errors import UserError


def per_class(samples) -> dict[int, int]:
    return dict(Counter(s.label for s in samples))


def paths(samples) -> set:
    return {s.path for s in samples}


def test_flat_folder_gets_exact_train_and_validation_sizes(class_folders):
    splits = load_dataset(class_folders, per_class=10, val_per_class=3, validation=True)

    assert per_class(splits.train) == {0: 10, 1: 10, 2: 10}
    assert per_class(splits.val) == {0: 3, 1: 3, 2: 3}
    assert not paths(splits.train) & paths(splits.val) and not paths(splits.val) & paths(splits.test)
    assert "too few to stop on" in splits.small_validation()


def test_test_per_class_sets_the_test_split_of_a_flat_folder(class_folders):
    splits = load_dataset(class_folders, test_per_class=4, val_per_class=5)

    assert per_class(splits.test) == {0: 4, 1: 4, 2: 4}
    assert per_class(splits.train) == {0: 11, 1: 11, 2: 11}
    assert splits.small_validation() is None


def pre_split(tmp_path, with_val: bool = False):
    root = tmp_path / "split"
    make_class_folders(root / "train", {"a": 12, "b": 12})
    make_class_folders(root / "test", {"a": 6, "b": 6}, seed=5)
    if with_val:
        make_class_folders(root / "val", {"a": 6, "b": 6}, seed=9)
    return root


def test_validation_is_carved_beside_the_training_images_a_method_without_one_gets(tmp_path):
    root = pre_split(tmp_path)

    splits = load_dataset(root, per_class=4, val_per_class=3, validation=True)
    default = load_dataset(root, per_class=4, validation=True)

    assert per_class(splits.train) == {0: 4, 1: 4} and per_class(splits.val) == {0: 3, 1: 3}
    assert not paths(splits.train) & paths(splits.val)
    assert per_class(default.train) == {0: 4, 1: 4} and len(default.val) > 0
    assert paths(splits.train) == paths(default.train) == paths(load_dataset(root, per_class=4).train)
    assert any("carved" in note for note in default.notes)


def test_methods_without_validation_keep_every_training_image(tmp_path):
    splits = load_dataset(pre_split(tmp_path))

    assert splits.val is None and len(splits.train) == 24


def test_val_and_test_per_class_cut_given_folders(tmp_path):
    splits = load_dataset(pre_split(tmp_path, with_val=True), val_per_class=2, test_per_class=5)

    assert per_class(splits.val) == {0: 2, 1: 2} and per_class(splits.test) == {0: 5, 1: 5}
    assert "5 per class" in splits.evaluated_on


def test_ratios_on_a_folder_with_its_own_splits_say_why_they_do_not_apply(tmp_path):
    splits = load_dataset(pre_split(tmp_path, with_val=True), ratios=(0.5, 0.25, 0.25))
    assert any("do not apply" in note and "val_per_class" in note for note in splits.notes)

    carved = load_dataset(pre_split(tmp_path / "b"), ratios=(0.5, 0.5, 0.2), validation=True)
    assert len(carved.val) == 12  # half of train/ (the validation share of 0.5,0.5): the ratios applied
    assert any("only their validation share applies" in note for note in carved.notes)


def test_too_few_images_for_the_sizes_asked_is_a_user_error(class_folders):
    with pytest.raises(UserError, match="val_per_class: class a has"):
        load_dataset(class_folders, val_per_class=20)


def test_early_stopping_is_off_on_a_small_validation_set_unless_patience_is_given():
    assert early_stopping_of("val_loss", None, None) == ("val_loss", 10, None)
    monitor, _, note = early_stopping_of("val_loss", None, "the validation set has 6 images")
    assert monitor == "none" and "early stopping is off" in note
    monitor, patience, note = early_stopping_of("val_loss", 3, "the validation set has 6 images")
    assert (monitor, patience) == ("val_loss", 3) and "stays on" in note


def test_a_study_with_per_class_10_trains_on_exactly_10_per_class(tmp_path, cli, monkeypatch):
    """Counts the training images the fine-tuning loop and the trained probe head are given."""
    from transferlab.finetune.run import FinetuneRun
    from transferlab.heads.mlp import MLPHead

    seen: dict[str, list] = {"finetune": [], "probe": []}
    stage_inputs = FinetuneRun.stage_inputs

    def count_stage_inputs(self, samples, name, training):
        if training:
            seen["finetune"].append(Counter(s.label for s in samples))
        return stage_inputs(self, samples, name, training)

    fit = MLPHead.fit

    def count_fit(self, X, y, X_val=None, y_val=None):
        seen["probe"].append((Counter(y.tolist()), len(y_val)))
        return fit(self, X, y, X_val, y_val)

    monkeypatch.setattr(FinetuneRun, "stage_inputs", count_stage_inputs)
    monkeypatch.setattr(MLPHead, "fit", count_fit)
    data = tmp_path / "data"  # train/ and test/ only: the validation set must come from train/, not from the 10
    make_image_folder(data / "train", per_class=14, size=24)
    make_image_folder(data / "test", per_class=3, size=24)
    study = write_study(tmp_path, f"""
        data: {data}
        backbones: [{TINY_BACKBONE}]
        settings: {{per_class: 10, val_per_class: 3, epochs: 1, stage2_epochs: 1, head_epochs: 2, num_workers: 0,
                    batch_size: 8, device: cpu}}
        methods:
          - {{name: ft, kind: finetune, freeze: "first:50%"}}
          - {{name: mlp, kind: probe, head: "mlp:16"}}
    """)
    store = tmp_path / "runs.sqlite"
    result = cli("study", "run", str(study), "--store", str(store))
    assert result.returncode == 0, result.stderr + result.stdout

    assert seen["finetune"] == [Counter({0: 10, 1: 10, 2: 10})]
    assert seen["probe"] == [(Counter({0: 10, 1: 10, 2: 10}), 9)]
    from transferlab.study.store import RunStore

    with RunStore(str(store)) as runs:
        for row in runs.runs():
            assert (row.result.train_images, row.result.val_images) == (30, 9)
            assert any("early stopping is off" in note for note in row.result.notes)
