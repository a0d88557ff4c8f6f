"""Heads on frozen features: each learns separable classes; the MLP stops early at its best epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.model_selection import train_test_split

from transferlab import UserError
from transferlab.heads import HEADS, make_head, parse_head
from transferlab.heads.mlp import MLPHead
from transferlab.heads.spec import FINETUNE_HEADS, HeadSpec


@pytest.fixture(scope="module")
def separable():
    X, y = make_blobs(n_samples=300, n_features=32, centers=3, cluster_std=2.0, random_state=0)
    return train_test_split(X.astype(np.float32), y, test_size=0.3, stratify=y, random_state=0)


@pytest.mark.parametrize("spec", ["logreg", "svm", "knn", "mlp", "mlp:64", "linear", "softmax"])
def test_head_learns_separable_classes(spec, separable):
    X_train, X_test, y_train, y_test = separable

    head = make_head(spec)
    if isinstance(head, MLPHead):
        head.max_epochs = 60  # enough here; keeps the test quick

    head.fit(X_train, y_train)

    assert (head.predict(X_test) == y_test).mean() > 0.95


def test_every_listed_head_can_be_made():
    assert all(make_head(name) is not None for name in HEADS)


def test_unknown_head_is_a_user_error():
    with pytest.raises(UserError, match="unknown head 'forest'"):
        make_head("forest")


def test_head_specs_are_parsed_once_and_bad_ones_are_a_user_error():
    assert parse_head("mlp:512,256") == HeadSpec("mlp", (512, 256))
    assert parse_head("mlp") == HeadSpec("mlp", (512, 256))
    assert parse_head("linear") == HeadSpec("linear")
    for bad in ("mlp:512,big", "mlp:0", "mlp:-3", "mlp:", "linear:3"):
        with pytest.raises(UserError):
            parse_head(bad)
    with pytest.raises(UserError, match="unknown head 'svm'"):
        parse_head("svm", FINETUNE_HEADS)


def test_mlp_head_probabilities_sum_to_one_and_predict_original_labels(separable):
    X_train, X_test, y_train, _ = separable
    head = MLPHead(hidden=(16,), max_epochs=20).fit(X_train, y_train + 10)

    proba = head.predict_proba(X_test)

    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(head.predict(X_test)) <= {10, 11, 12}


@pytest.fixture(scope="module")
def overfitting_fit():
    """Pure noise: a wide MLP memorises the training set and its validation loss soon rises."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 64)).astype(np.float32), rng.integers(0, 2, 120)
    X_val, y_val = rng.normal(size=(60, 64)).astype(np.float32), rng.integers(0, 2, 60)
    head = MLPHead(hidden=(256,), dropout=0.0, lr=1e-2, max_epochs=200, patience=3).fit(X, y, X_val, y_val)
    return head, X_val, y_val


def test_mlp_head_stops_early_when_validation_loss_stops_improving(overfitting_fit):
    head, _, _ = overfitting_fit
    losses = [h["val_loss"] for h in head.history_]

    assert len(head.history_) < 200
    assert len(head.history_) == head.best_epoch_ + 3  # patience epochs after the best
    assert head.best_epoch_ == int(np.argmin(losses)) + 1


def test_mlp_head_restores_the_weights_of_its_best_epoch(overfitting_fit):
    head, X_val, y_val = overfitting_fit
    proba = torch.as_tensor(head.predict_proba(X_val))

    loss = float(torch.nn.functional.nll_loss(proba.log(), torch.as_tensor(y_val)))

    best = head.history_[head.best_epoch_ - 1]["val_loss"]
    last = head.history_[-1]["val_loss"]
    assert loss == pytest.approx(best, rel=1e-4)
    assert loss != pytest.approx(last, rel=1e-4)


def test_mlp_head_holds_out_validation_data_when_none_is_given(separable):
    X_train, _, y_train, _ = separable

    head = MLPHead(hidden=(16,), max_epochs=5).fit(X_train, y_train)

    assert len(head.history_) == 5
    assert {"epoch", "train_loss", "val_loss", "val_accuracy"} <= set(head.history_[0])


def test_mlp_head_with_dropout_is_reproducible_with_a_seed(separable):
    X_train, X_test, y_train, _ = separable

    a = MLPHead(hidden=(16,), dropout=0.5, max_epochs=5, seed=3).fit(X_train, y_train).predict_proba(X_test)
    torch.rand(10)  # whatever the caller did with the global random state in between
    b = MLPHead(hidden=(16,), dropout=0.5, max_epochs=5, seed=3).fit(X_train, y_train).predict_proba(X_test)

    np.testing.assert_array_equal(a, b)


def test_mlp_head_leaves_the_callers_random_state_alone(separable):
    X_train, _, y_train, _ = separable
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)

    MLPHead(hidden=(16,), max_epochs=2).fit(X_train, y_train)

    assert torch.equal(torch.rand(3), expected)
