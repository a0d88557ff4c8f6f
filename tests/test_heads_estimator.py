"""The trained probe heads are scikit-learn classifiers: cloneable, in a Pipeline and a grid search, with a
feature scale that cannot explode, their own validation hold-out, and the probe's head options reaching them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks

from transferlab.engine.learner import Learner
from transferlab.heads import make_head
from transferlab.heads.mlp import MLPHead
from transferlab.heads.scaling import FeatureScaler, feature_scaling
from transferlab.probing.config import ProbeConfig
from transferlab.probing.run import probe, probe_parts

from helpers import make_class_folders

TINY = {"backbone": "test_efficientnet", "random_init": True, "num_workers": 0, "device": "cpu"}


def quick(**params) -> MLPHead:
    return MLPHead(**{"hidden": (), "dropout": 0.0, "max_epochs": 30, "lr": 1e-2, **params})


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=120, n_features=6, centers=3, cluster_std=1.5, random_state=0)
    return X.astype(np.float32), y


def test_clone_gives_an_unfitted_head_with_the_same_parameters(blobs):
    head = quick(weight_decay=0.3, validation_fraction=0.2, scaling="global", seed=4).fit(*blobs)

    copy = clone(head)

    assert copy.get_params() == head.get_params()
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")


def test_head_works_in_a_pipeline_after_a_standard_scaler(blobs):
    X, y = blobs
    pipeline = make_pipeline(StandardScaler(), quick(scaling="none")).fit(X * 1000 + 50, y)

    assert pipeline.score(X * 1000 + 50, y) > 0.9
    np.testing.assert_allclose(pipeline.predict_proba(X[:5] * 1000 + 50).sum(axis=1), 1.0, rtol=1e-5)


def test_grid_search_tunes_the_weight_decay(blobs):
    search = GridSearchCV(quick(max_epochs=10), {"weight_decay": [1e-3, 100.0]}, cv=2).fit(*blobs)

    assert search.best_params_ == {"weight_decay": 1e-3}  # a penalty of 100 keeps every weight at zero
    assert search.cv_results_["mean_test_score"][1] < 0.5


@pytest.mark.parametrize("check", [
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_dont_overwrite_parameters,
    estimator_checks.check_estimators_unfitted,
    estimator_checks.check_fit_check_is_fitted,
    estimator_checks.check_n_features_in,
    estimator_checks.check_fit2d_predict1d,
    estimator_checks.check_classifiers_classes,
    estimator_checks.check_estimators_dtypes,
], ids=lambda check: check.__name__)
def test_scikit_learn_estimator_checks(check):
    check("MLPHead", MLPHead(hidden=(4,), max_epochs=2))


@pytest.mark.parametrize("check", [
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_transformer_general,
    estimator_checks.check_n_features_in,
    estimator_checks.check_fit_check_is_fitted,
], ids=lambda check: check.__name__)
def test_scikit_learn_estimator_checks_of_the_scaler(check):
    check("FeatureScaler", FeatureScaler())


@pytest.mark.parametrize("spec", ["linear", "mlp:16", "logreg"])
def test_a_feature_constant_on_the_training_images_does_not_explode_on_new_ones(blobs, spec):
    """Few images: a ReLU channel that stayed at 0, or barely moved, over them takes other values on new images."""
    X, y = blobs
    rng = np.random.default_rng(0)
    train = np.column_stack([X, np.zeros(len(X)), 1.0 + 1e-7 * rng.normal(size=len(X))]).astype(np.float32)
    new = train.copy()
    new[:, -2:] = rng.uniform(0.5, 2.0, size=(len(X), 2))

    head = make_head(spec, seed=0, max_epochs=30, lr=1e-2).fit(train, y)

    assert np.abs(head.predict_proba(new) - head.predict_proba(train)).max() < 0.2
    assert (head.predict(new) == y).mean() > 0.9


def test_no_feature_is_divided_by_less_than_the_median_scale():
    X = np.column_stack([np.full(8, 3.0), np.arange(8) * 1e-6, np.arange(8.0), 2 * np.arange(8.0)])

    mean, scale = feature_scaling(X, "standard")

    typical = np.median(X.std(axis=0)[X.std(axis=0) > 0])
    assert scale.min() == pytest.approx(typical) and scale[3] == pytest.approx(X[:, 3].std())
    np.testing.assert_allclose(mean, X.mean(axis=0))
    assert feature_scaling(np.ones((4, 3)), "standard")[1].tolist() == [1.0, 1.0, 1.0]  # all constant: scale 1


@pytest.fixture
def loop_inputs(monkeypatch):
    """What each head fit handed the engine's loop: sizes of the training and validation sets, and its settings."""
    seen: list[dict] = []
    engine_fit = Learner.fit

    def spy(learner, epochs, *args, **kw):
        stopper = learner.callbacks[0]
        optimizer = learner.opt_func(learner.model, "head")
        seen.append({"train": len(learner.train), "val": None if learner.val is None else len(learner.val),
                     "epochs": epochs, "batch_size": learner.batch_size, "lr": optimizer.param_groups[0]["lr"],
                     "weight_decay": optimizer.param_groups[0]["weight_decay"], "patience": stopper.patience,
                     "monitor": stopper.monitor})
        return engine_fit(learner, epochs, *args, **kw)

    monkeypatch.setattr(Learner, "fit", spy)
    return seen


def test_validation_fraction_sets_the_share_held_out_for_early_stopping(blobs, loop_inputs):
    X, y = blobs
    quick(validation_fraction=0.25).fit(X, y)
    quick(validation_fraction=0.5).fit(X, y)
    none = quick(validation_fraction=0.0, max_epochs=7, patience=1).fit(X, y)
    quick(validation_fraction=0.5).fit(X[:90], y[:90], X[90:], y[90:])  # a given validation set is used whole

    assert [(s["train"], s["val"]) for s in loop_inputs] == [(90, 30), (60, 60), (120, None), (90, 30)]
    assert len(none.history_) == 7 and "val_loss" not in none.history_[0]  # nothing to stop on: every epoch


def test_holding_out_from_too_few_samples_names_the_parameter(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="validation_fraction"):
        quick().fit(X[:4], y[:4])


def test_probe_head_options_reach_the_estimator_and_its_loop(class_folders, loop_inputs):
    probe(class_folders, head="linear", val_per_class=5, head_epochs=3, head_lr=0.02, head_weight_decay=0.05,
          head_patience=2, head_batch_size=8, **TINY)
    probe(class_folders, head="mlp:8", val_per_class=5, head_epochs=2, **TINY)
    probe(class_folders, head="softmax", val_per_class=5, head_epochs=1, **TINY)

    linear, mlp_head, softmax = loop_inputs
    linear.pop("train")
    assert linear == {"val": 15, "epochs": 3, "batch_size": 8, "lr": 0.02, "weight_decay": 0.05, "patience": 2,
                      "monitor": "val_loss"}
    assert (mlp_head["weight_decay"], softmax["weight_decay"]) == (0.1, 1e-4)  # each head's own default
    assert (mlp_head["epochs"], mlp_head["lr"], mlp_head["batch_size"]) == (2, 1e-3, 64)


def test_head_weight_decay_is_a_cli_option(cli, class_folders, loop_inputs):
    result = cli("probe", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init", "--head",
                 "linear", "--head-epochs", "1", "--head-weight-decay", "0.25", "--val-per-class", "5",
                 "--workers", "0", "--device", "cpu")

    assert result.returncode == 0, result.stderr
    assert loop_inputs[0]["weight_decay"] == 0.25


def test_every_head_trains_on_the_same_images(tmp_path):
    """train/ and test/ only: a trained head's validation set is carved beside the training images, not before."""
    data = tmp_path / "data"
    make_class_folders(data / "train", {"a": 12, "b": 12, "c": 12})
    make_class_folders(data / "test", {"a": 3, "b": 3, "c": 3}, seed=1)
    parts = {head: probe_parts(ProbeConfig(data=str(data), head=head, per_class=4, **TINY))[1]
             for head in ("logreg", "linear", "mlp")}

    assert [s.path for s in parts["linear"]["train"]] == [s.path for s in parts["logreg"]["train"]]
    assert [s.path for s in parts["mlp"]["train"]] == [s.path for s in parts["logreg"]["train"]]
    assert len(parts["linear"]["train"]) == 12 and parts["logreg"]["val"] == []
    assert len(parts["linear"]["val"]) and not {s.path for s in parts["linear"]["val"]} & {
        s.path for s in parts["linear"]["train"]}
