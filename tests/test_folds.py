"""Stratified K-fold cross-validation: every image tested once, classes in every fold, folds from the CLI and
from a study."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from helpers import make_class_folders
from study_fixtures import TINY_BACKBONE, write_study
from transferlab.data.layout import load_dataset
from transferlab.errors import UserError
from transferlab.probing.config import ProbeConfig


def _folds(data: Path, folds: int = 5, seed: int = 0, **options):
    return [load_dataset(data, folds=folds, fold=i, seed=seed, **options) for i in range(folds)]


def test_every_image_is_tested_exactly_once_and_never_trained_on_in_its_fold(tmp_path):
    data = make_class_folders(tmp_path / "d", {"a": 12, "b": 9, "c": 7})
    splits = _folds(data, 3)
    tested = [s.path for fold in splits for s in fold.test]
    assert len(tested) == len(set(tested)) == 28
    for fold in splits:
        assert not {s.path for s in fold.train} & {s.path for s in fold.test}
        assert len(fold.train) + len(fold.test) == 28 and fold.val is None


def test_folds_are_stratified(tmp_path):
    data = make_class_folders(tmp_path / "d", {"a": 10, "b": 10, "c": 10})
    for fold in _folds(data, 5):
        assert Counter(s.label for s in fold.test) == {0: 2, 1: 2, 2: 2}


def test_the_seed_draws_other_folds(tmp_path):
    data = make_class_folders(tmp_path / "d", {"a": 10, "b": 10})
    assert {s.path for s in _folds(data, 2, seed=0)[0].test} != {s.path for s in _folds(data, 2, seed=1)[0].test}


def test_given_splits_are_pooled_with_a_note(tmp_path):
    make_class_folders(tmp_path / "d" / "train", {"a": 6, "b": 6})
    make_class_folders(tmp_path / "d" / "test", {"a": 3, "b": 3}, seed=7)
    fold = load_dataset(tmp_path / "d", folds=3, fold=1)
    assert len(fold.train) + len(fold.test) == 18
    assert {s.path.parent.parent.name for s in fold.train + fold.test} == {"train", "test"}
    assert "fold 1 of 3" in fold.evaluated_on and any("pools the given splits" in n for n in fold.notes)


def test_per_class_limits_the_training_images_of_a_fold(tmp_path):
    data = make_class_folders(tmp_path / "d", {"a": 10, "b": 10})
    fold = load_dataset(data, folds=5, fold=0, per_class=3)
    assert Counter(s.label for s in fold.train) == {0: 3, 1: 3} and len(fold.test) == 4


@pytest.mark.parametrize("options, message", [
    ({"folds": 5, "fold": None}, "without a fold"),
    ({"folds": 12, "fold": 0}, "too few for 12 folds"),
])
def test_unusable_folds_are_refused(tmp_path, options, message):
    data = make_class_folders(tmp_path / "d", {"a": 10, "b": 6})
    with pytest.raises(UserError, match=message):
        load_dataset(data, **options)


@pytest.mark.parametrize("options, message", [
    ({"fold": 1}, "needs folds"), ({"folds": 3, "fold": 3}, "between 0 and 2"), ({"folds": 1}, "at least 2"),
])
def test_config_checks_fold_against_folds(options, message):
    with pytest.raises(UserError, match=message):
        ProbeConfig(**options)


def test_probe_folds_json_reports_each_fold_and_the_mean(cli, class_folders):
    out = cli("probe", "--data", str(class_folders), "-b", "test_resnet", "--random-init", "--folds", "3",
              "--workers", "0", "--json", "--predictions")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    folds = report["folds"]
    assert [f["fold"] for f in folds] == [0, 1, 2] and sum(f["test_images"] for f in folds) == 60
    accuracies = [f["accuracy"] for f in folds]
    assert report["mean"] == pytest.approx(sum(accuracies) / 3)
    low, high = report["interval"]
    assert low <= report["mean"] <= high
    tested = [p["path"] for f in folds for p in f["predictions"]]
    assert len(tested) == len(set(tested)) == 60
    correct = sum(p["true"] == p["predicted"] for f in folds for p in f["predictions"])
    assert report["pooled_accuracy"] == pytest.approx(correct / 60)
    for fold in folds:
        assert fold["accuracy_interval"][0] <= fold["accuracy"] <= fold["accuracy_interval"][1]


def test_folds_extract_each_image_once(class_folders, tmp_path, monkeypatch):
    from transferlab.crossval import run_folds
    from transferlab.probing.run import run_probe

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "fresh-cache"))
    config = ProbeConfig(data=str(class_folders), backbone="test_resnet", random_init=True, folds=3, num_workers=0)
    results = run_folds(config, run_probe).folds
    assert results[0].features_computed == 60
    assert [r.features_computed for r in results[1:]] == [0, 0]


def test_probe_folds_table_and_bad_folds(cli, class_folders):
    out = cli("probe", "--data", str(class_folders), "-b", "test_resnet", "--random-init", "--folds", "2",
              "--workers", "0")
    assert out.returncode == 0, out.stderr
    assert "fold 1 accuracy (30 images)" in out.stdout and "95% interval of the mean" in out.stdout
    bad = cli("probe", "--data", str(class_folders), "--folds", "1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_a_study_with_folds_runs_each_fold_and_reports_their_mean(tmp_path, monkeypatch):
    from transferlab.report import records_for_plan
    from transferlab.report.tables import comparison_rows
    from transferlab.study import RunStore, load_study, plan_study, run_study

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_class_folders(tmp_path / "data", {"a": 6, "b": 6})
    path = write_study(tmp_path, f"""
        name: folds
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, folds: 3}}
        methods:
          - {{name: logreg, kind: probe}}
          - {{name: knn, kind: probe, head: knn, sweep: {{fold: [0, 2]}}}}
        """)
    plan = plan_study(load_study(path))
    assert sorted((r.method, r.axes["fold"]) for r in plan.runs) == [
        ("knn", 0), ("knn", 2), ("logreg", 0), ("logreg", 1), ("logreg", 2)]
    store = RunStore(tmp_path / "runs.sqlite")
    assert run_study(plan, store).count("done") == 5
    records = records_for_plan(store, plan)
    row = next(r for r in comparison_rows(records) if r["method"] == "logreg")
    assert row["runs"] == 3 and row["setting"] == ""
    assert row["accuracy_mean"] == pytest.approx(sum(r.accuracy for r in records if r.method == "logreg") / 3)


def test_a_fold_beyond_the_folds_is_an_error_at_its_line(tmp_path):
    from transferlab.study import load_study, plan_study

    make_class_folders(tmp_path / "data", {"a": 6, "b": 6})
    path = write_study(tmp_path, """
        data: data
        settings: {folds: 3}
        methods:
          - {name: logreg, kind: probe, sweep: {fold: [3]}}
        """)
    with pytest.raises(UserError, match="study.yaml:4.*between 0 and 2"):
        plan_study(load_study(path))


def test_finetune_folds_train_a_model_per_fold(cli, class_folders, tmp_path):
    out = cli("finetune", "-d", str(class_folders), "-b", "small-cnn", "--folds", "2", "--epochs", "1",
              "--workers", "0", "--device", "cpu", "--precision", "fp32", "-o", str(tmp_path / "m"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [f["test_images"] for f in report["folds"]] == [30, 30]
    assert report["mean"] == pytest.approx(sum(f["accuracy"] for f in report["folds"]) / 2)
    assert (tmp_path / "m" / "fold-0").is_dir() and (tmp_path / "m" / "fold-1").is_dir()


def test_probe_table_shows_the_accuracy_with_its_interval(cli, class_folders):
    out = cli("probe", "--data", str(class_folders), "-b", "test_resnet", "--random-init", "--workers", "0", "--json")
    record = json.loads(out.stdout)
    low, high = record["accuracy_interval"]
    correct = round(record["accuracy"] * record["test_images"])
    from transferlab.stats import wilson_interval

    assert (low, high) == pytest.approx(wilson_interval(correct, record["test_images"]))
    table = cli("probe", "--data", str(class_folders), "-b", "test_resnet", "--random-init", "--workers", "0")
    assert f"{record['accuracy']:.4f} [{low:.3f}, {high:.3f}]" in table.stdout
