"""``probe --layer NAME`` takes any module the backbone's ``forward_features`` runs (VGG's pool layers, which timm's
feature_info leaves out), read by a forward hook; a misspelt layer fails before anything loads and at
``study run --dry-run``, naming the valid ones.

VGG-11 (random weights) at 64 px: ``features.10`` is its third block's max-pool, 256 x 8 x 8.
"""

from __future__ import annotations

import pytest
import torch

from helpers import make_class_folders
from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.backbones import load_backbone
from transferlab.errors import UserError
from transferlab.features import FeatureExtractor
from transferlab.probing import probe

VGG = {"backbone": "vgg11", "random_init": True, "image_size": 64, "num_workers": 0, "head": "logreg"}


@pytest.fixture(scope="module")
def vgg():
    return load_backbone("vgg11", random_init=True, image_size=64)


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("module-layers") / "data", {"a": 8, "b": 8})


def test_a_pool_layer_outside_feature_info_is_a_feature_layer(two_classes):
    pooled = probe(two_classes, layer="features.10", **VGG)
    flat = probe(two_classes, layer="features.10", pooling="flatten", **VGG)

    assert (pooled.layer, pooled.pooling, pooled.feature_dim) == ("features.10", "avg", 256)
    assert flat.feature_dim == 256 * 8 * 8


def test_the_hooked_features_are_that_modules_output(vgg, tmp_path):
    """Not a neighbour's, not the last layer's: the output of features[0..10] itself, max-pooled."""
    images = torch.rand(3, 3, 64, 64)
    extractor = FeatureExtractor(vgg, layer="features.10", pooling="max", cache=False)
    with torch.no_grad():
        expected = vgg.model.features[:11](images.contiguous(memory_format=torch.channels_last)).amax((2, 3))
    torch.testing.assert_close(torch.from_numpy(extractor.features(images)), expected.float(), rtol=1e-3, atol=1e-3)


def test_each_module_layer_has_its_own_cached_features(two_classes, tmp_path):
    first = probe(two_classes, layer="features.12", pooling="max", **VGG)
    again = probe(two_classes, layer="features.12", pooling="max", **VGG)
    other = probe(two_classes, layer="features.11", pooling="max", **VGG)

    assert first.features_computed > 0 and again.features_computed == 0
    assert other.features_from_cache == 0 and other.feature_dim == 512


def test_a_misspelt_layer_fails_before_data_or_weights_load_naming_the_valid_ones(tmp_path):
    with pytest.raises(UserError) as error:
        probe(tmp_path / "no-such-folder", backbone="vgg16", layer="featurs.23")
    message = str(error.value)
    assert "unknown layer 'featurs.23'" in message
    assert "features.23" in message and "4 (features.29)" in message


def test_a_misspelt_layer_fails_at_a_study_dry_run_with_one_error_line(cli, tmp_path):
    make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        name: layers
        data: data
        backbones: [{TINY_BACKBONE}]
        methods: [{{name: mid, kind: probe, head: logreg, layer: blockz.2}}]
        """)
    result = cli("study", "run", str(study), "--store", str(tmp_path / "runs.sqlite"), "--dry-run")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "unknown layer 'blockz.2'" in lines[0] and "blocks.2" in lines[0]
    assert not (tmp_path / "runs.sqlite").exists()


def test_a_module_layer_passes_a_study_dry_run(cli, tmp_path):
    make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        name: layers
        data: data
        backbones: [{TINY_BACKBONE}]
        methods: [{{name: mid, kind: probe, head: logreg, layer: blocks.2.0.conv_exp}}]
        """)
    result = cli("study", "run", str(study), "--store", str(tmp_path / "runs.sqlite"), "--dry-run")
    assert result.returncode == 0, result.stderr
