"""probe(): frozen features, a head, evaluation on held-out images, in one call."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import DIGITS_SMALL
from transferlab import ProbeConfig, ProbeResult, UserError, probe
from transferlab.probing.run import temperature_features


@pytest.fixture(scope="module")
def digits_result() -> ProbeResult:
    """The real Lite0 + logreg on three digit classes, ten training images each."""
    return probe("digits", **DIGITS_SMALL)


def test_probe_on_digits_is_well_above_chance(digits_result):
    assert digits_result.accuracy > 0.8  # chance is 1/3
    assert digits_result.macro_f1 > 0.8


def test_bf16_features_give_the_fp32_accuracy_within_one_test_image(digits_result):
    """bf16 autocast changes the features a little, not what the probe learns from them."""
    fp32 = probe("digits", precision="fp32", **DIGITS_SMALL)
    bf16 = probe("digits", precision="bf16", **DIGITS_SMALL)
    assert (fp32.runtime["precision"], bf16.runtime["precision"]) == ("fp32", "bf16")
    assert fp32.test_images == bf16.test_images
    assert round(abs(fp32.accuracy - bf16.accuracy) * fp32.test_images) <= 1


def test_probe_reports_the_backbones_feature_dim_and_layer_count(digits_result):
    assert digits_result.feature_dim == 1280
    assert digits_result.backbone_layers == 17  # freeze units: stem, 16 blocks (the last with the head conv)
    assert digits_result.timm_name.startswith("tf_efficientnet_lite0")


def test_probe_uses_the_classes_and_training_images_asked_for(digits_result):
    assert digits_result.classes == ["0", "1", "2"]
    assert digits_result.train_images == 30
    assert digits_result.evaluated_on.startswith("test")


def test_probe_confusion_matrix_covers_every_test_image(digits_result):
    matrix = np.array(digits_result.confusion_matrix)

    assert matrix.shape == (3, 3)
    assert matrix.sum() == digits_result.test_images
    assert np.trace(matrix) / matrix.sum() == pytest.approx(digits_result.accuracy)


def test_probe_predictions_name_each_test_image(digits_result):
    assert len(digits_result.predictions) == digits_result.test_images
    first = digits_result.predictions[0]
    assert first["true"] in digits_result.classes and first["predicted"] in digits_result.classes


def test_probe_records_its_config(digits_result):
    config = ProbeConfig(**{**digits_result.config, "ratios": tuple(digits_result.config["ratios"])})

    assert config == ProbeConfig(data="digits", **DIGITS_SMALL)


def test_probe_run_again_reads_features_from_cache(digits_result):
    again = probe("digits", **DIGITS_SMALL)

    assert again.features_computed == 0
    assert again.features_from_cache == digits_result.features_computed + digits_result.features_from_cache
    assert again.accuracy == digits_result.accuracy


def test_temperature_features_are_rows_of_probabilities():
    logits = np.random.default_rng(0).normal(0, 5, (4, 1000)).astype(np.float32)

    features = temperature_features(logits, 2.0)

    np.testing.assert_allclose(features.sum(axis=1), 1.0, rtol=1e-5)
    assert (features >= 0).all()
    assert np.array_equal(features.argmax(axis=1), logits.argmax(axis=1))


def test_higher_temperature_gives_flatter_probabilities():
    logits = np.random.default_rng(0).normal(0, 5, (4, 1000)).astype(np.float32)

    sharp, flat = temperature_features(logits, 1.0), temperature_features(logits, 4.0)

    assert (flat.max(axis=1) < sharp.max(axis=1)).all()


def test_no_temperature_leaves_features_unchanged():
    logits = np.random.default_rng(0).normal(size=(2, 10)).astype(np.float32)

    assert temperature_features(logits, None) is logits


def test_temperature_probe_trains_a_softmax_head_on_imagenet_probabilities():
    result = probe("digits", temperature=2.0, head="softmax", ratios=(0.8, 0.1, 0.1), **DIGITS_SMALL)

    assert result.layer == "logits" and result.temperature == 2.0
    assert result.feature_dim == 1000
    assert result.val_images > 0
    assert result.history and {"train_loss", "val_loss", "val_accuracy"} <= set(result.history[0])
    assert result.val_accuracy_final == result.history[-1]["val_accuracy"]
    assert result.accuracy > 1 / 3


@pytest.mark.parametrize("field, value, message", [
    ("temperature", 0.0, "temperature must be greater than 0"),
    ("temperature", float("nan"), "temperature must be a finite number"),
    ("C", 0.0, "C must be greater than 0"),
    ("batch_size", 0, "batch_size must be at least 1"),
    ("num_workers", -1, "num_workers must be at least 0"),
    ("seed", -1, "seed must be at least 0"),
    ("dropout", 1.5, "dropout must be at most 0.95"),
    ("pooling", "mean", "unknown pooling 'mean'"),
    ("head", "mlp:-3", "mlp hidden sizes must be positive"),
    ("ratios", (0.7, float("nan"), 0.15), "split ratios"),
])
def test_out_of_range_probe_options_are_user_errors_when_the_config_is_made(field, value, message):
    with pytest.raises(UserError, match=message):
        ProbeConfig(data="digits", **{field: value})


def test_unknown_probe_option_is_a_user_error():
    with pytest.raises(UserError, match="probe\\(\\)"):
        probe("digits", backbone_name="resnet50")


def test_probe_with_a_random_init_tiny_backbone_runs_end_to_end(class_folders):
    result = probe(class_folders, backbone="test_resnet", random_init=True, head="knn", num_workers=0)

    assert result.weights == "random initialisation"
    assert result.feature_dim == 96
    assert result.backbone_layers == 5  # freeze units: stem and the 4 blocks
    assert result.test_images == 9 and result.unreadable_count == 0


def test_probe_on_an_intermediate_layer_reports_its_pooling_and_dimension(class_folders):
    result = probe(class_folders, backbone="test_efficientnet", random_init=True, layer="2", pooling="max", num_workers=0)

    assert (result.layer, result.pooling) == ("blocks.2", "max")
    assert result.feature_dim == 32


def test_knn_head_with_fewer_training_images_than_neighbours_is_a_user_error(class_folders):
    with pytest.raises(UserError, match="knn looks at 5 neighbours but there are only 4"):
        probe(class_folders, backbone="test_efficientnet", random_init=True, head="knn", num_classes=2, per_class=2,
              num_workers=0)
