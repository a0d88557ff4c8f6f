"""The trained probe heads' settings (epochs, lr, patience, batch size), their curves, the temperature head's
input scale, and the figures every result records for the tables."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.heads.mlp import MLPHead
from transferlab.probing.run import probe, temperature_features

TINY = {"backbone": "test_efficientnet", "random_init": True, "num_workers": 0, "device": "cpu"}


@pytest.fixture
def data(class_folders):
    return class_folders  # 3 classes of 20: with val_per_class 5, a validation set large enough to stop on


def run(data, **options):
    return probe(data, head="linear", val_per_class=5, **TINY, **options)


def test_head_epochs_sets_how_long_a_trained_head_trains(data):
    assert len(run(data, head_epochs=3, head_patience=1000).history) == 3
    assert len(run(data, head_epochs=7, head_patience=1000).history) == 7


def test_head_lr_and_batch_size_change_the_training(data):
    base = run(data, head_epochs=3, head_patience=1000)
    faster = run(data, head_epochs=3, head_patience=1000, head_lr=0.1)
    smaller = run(data, head_epochs=3, head_patience=1000, head_batch_size=4)

    assert base.history[0]["lr"] == pytest.approx(1e-3) and faster.history[0]["lr"] == pytest.approx(0.1)
    assert faster.history[-1]["train_loss"] != pytest.approx(base.history[-1]["train_loss"])
    assert smaller.history[-1]["train_loss"] != pytest.approx(base.history[-1]["train_loss"])


def test_head_patience_stops_a_trained_head_early(data):
    stopped = run(data, head_epochs=200, head_patience=1, head_lr=0.5)

    assert len(stopped.history) < 200


def test_trained_head_curves_and_table_figures_are_recorded(data):
    result = run(data, head_epochs=4, head_patience=1000)

    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(result.history[0])
    assert result.train_accuracy_final == result.history[-1]["train_accuracy"]
    assert result.val_accuracy_final == result.history[-1]["val_accuracy"]
    assert result.test_loss is not None and result.test_loss > 0
    assert result.test_seconds is not None and result.training_seconds >= result.head_fit_seconds
    assert result.train_features_seconds is not None


def test_sklearn_heads_record_their_train_accuracy_and_test_loss(data):
    logreg = probe(data, head="logreg", **TINY)
    svm = probe(data, head="svm", **TINY)

    assert 0 < logreg.train_accuracy_final <= 1 and logreg.test_loss is not None and logreg.val_accuracy_final is None
    assert svm.test_loss is None  # a linear SVM gives no probabilities


def test_softmax_head_learns_from_temperature_scaled_probabilities():
    """softmax(logits / 4) rows are ~1/1000 each: unscaled, Adam at 1e-3 moves the loss by a few thousandths."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    logits = rng.normal(0, 2, (60, 1000)).astype(np.float32)
    for c in range(3):
        logits[labels == c, c * 10:c * 10 + 5] += 3.0
    features = temperature_features(logits, 4.0)

    head = MLPHead(hidden=(), dropout=0.0, scaling="global", max_epochs=30, patience=100)
    head.fit(features[:45], labels[:45], features[45:], labels[45:])

    assert head.history_[-1]["train_loss"] < 0.5 * head.history_[0]["train_loss"]
    # one scale for the whole matrix: every vector keeps its shape
    assert np.ptp(head.scale_) == 0 and np.ptp(head.mean_) == 0


def test_probe_head_settings_are_cli_options(cli, data):
    result = cli("probe", "--data", str(data), "-b", "test_efficientnet", "--random-init", "--head", "linear",
                 "--head-epochs", "2", "--head-patience", "5", "--head-lr", "0.01", "--head-batch-size", "16",
                 "--val-per-class", "5", "--workers", "0", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    import json

    record = json.loads(result.stdout)
    assert len(record["history"]) == 2 and record["history"][0]["lr"] == pytest.approx(0.01)
    assert record["config"]["head_batch_size"] == 16


def test_probe_table_shows_the_new_columns(cli, data):
    result = cli("probe", "--data", str(data), "-b", "test_efficientnet", "--random-init", "--head", "logreg",
                 "--workers", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    for row in ("training, total (frozen features)", "test set inference seconds", "test loss",
                "final train / val accuracy"):
        assert row in result.stdout
