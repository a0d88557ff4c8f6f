"""The on-disk feature cache: computed once per image content and setting, written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import write_image
from transferlab.features import FeatureExtractor


@pytest.fixture
def images(tmp_path):
    return [write_image(tmp_path / "images" / f"{i}.png", seed=i) for i in range(5)]


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "features"


def extractor(backbone, cache_dir, **options):
    return FeatureExtractor(backbone, num_workers=0, batch_size=2, cache_root=cache_dir, **options)


def test_first_extraction_computes_every_image(tiny, images, cache_dir):
    result = extractor(tiny, cache_dir).extract(images)

    assert (result.computed, result.from_cache) == (5, 0)


def test_second_extraction_reads_everything_from_cache_with_identical_features(tiny, images, cache_dir):
    first = extractor(tiny, cache_dir).extract(images)

    second = extractor(tiny, cache_dir).extract(images)

    assert (second.computed, second.from_cache) == (0, 5)
    np.testing.assert_array_equal(second.features, first.features)


def test_cached_features_equal_freshly_computed_ones(tiny, images, cache_dir):
    extractor(tiny, cache_dir).extract(images)

    cached = extractor(tiny, cache_dir).extract(images).features
    fresh = extractor(tiny, cache_dir, cache=False).extract(images).features

    np.testing.assert_allclose(cached, fresh, rtol=1e-5, atol=1e-6)


def test_changed_image_is_recomputed_alone(tiny, images, cache_dir):
    first = extractor(tiny, cache_dir).extract(images)
    write_image(images[2], seed=99)

    second = extractor(tiny, cache_dir).extract(images)

    assert (second.computed, second.from_cache) == (1, 4)
    assert not np.allclose(second.features[2], first.features[2])
    np.testing.assert_array_equal(np.delete(second.features, 2, 0), np.delete(first.features, 2, 0))


def test_renamed_image_keeps_its_cached_features(tiny, images, cache_dir):
    extractor(tiny, cache_dir).extract(images)
    moved = images[0].rename(images[0].with_name("renamed.png"))

    result = extractor(tiny, cache_dir).extract([moved])

    assert (result.computed, result.from_cache) == (0, 1)


def test_another_layer_or_pooling_uses_another_cache_folder(tiny, cache_dir):
    folders = {
        extractor(tiny, cache_dir).cache.folder,
        extractor(tiny, cache_dir, layer="logits").cache.folder,
        extractor(tiny, cache_dir, layer=2, pooling="avg").cache.folder,
        extractor(tiny, cache_dir, layer=2, pooling="max").cache.folder,
        extractor(tiny, cache_dir, layer=3, pooling="avg").cache.folder,
    }

    assert len(folders) == 5


def test_same_settings_use_the_same_cache_folder(tiny, cache_dir):
    assert extractor(tiny, cache_dir, layer=2).cache.folder == extractor(tiny, cache_dir, layer="blocks.2").cache.folder


def test_bf16_features_use_another_cache_folder_than_fp32(tiny, cache_dir):
    from transferlab.engine import Runtime

    fp32 = FeatureExtractor(tiny, cache_root=cache_dir, runtime=Runtime(precision="fp32"))
    bf16 = FeatureExtractor(tiny, cache_root=cache_dir, runtime=Runtime(precision="bf16"))

    assert fp32.cache.folder != bf16.cache.folder


def test_another_decoding_path_uses_another_cache_folder(tiny, cache_dir, monkeypatch):
    """Reduced-size JPEG decoding changes pixels a little: its features are not the full decode's."""
    first = FeatureExtractor(tiny, cache_root=cache_dir).cache.folder
    monkeypatch.setattr("transferlab.data.transforms.DECODE_MARGIN", 1)

    assert FeatureExtractor(tiny, cache_root=cache_dir).cache.folder != first


def test_other_weights_use_another_cache_folder(tiny, cache_dir):
    from transferlab import load_backbone

    other = load_backbone("test_efficientnet", random_init=True, seed=1)

    assert extractor(tiny, cache_dir).cache.folder != extractor(other, cache_dir).cache.folder


def test_features_of_another_layer_are_not_served_from_the_first_layers_cache(tiny, images, cache_dir):
    extractor(tiny, cache_dir, layer=2).extract(images)

    result = extractor(tiny, cache_dir, layer=2, pooling="max").extract(images)

    assert result.computed == 5


def test_cache_writes_leave_no_temporary_files(tiny, images, cache_dir):
    extractor(tiny, cache_dir).extract(images)

    names = [name for _, _, files in os.walk(cache_dir) for name in files]
    assert sum(name.endswith(".npz") for name in names) == 5
    assert not [name for name in names if name.endswith(".tmp")]


def test_damaged_cache_file_is_recomputed(tiny, images, cache_dir):
    ex = extractor(tiny, cache_dir)
    first = ex.extract(images)
    next(ex.cache.folder.rglob("*.npz")).write_bytes(b"garbage")

    second = extractor(tiny, cache_dir).extract(images)

    assert (second.computed, second.from_cache) == (1, 4)
    np.testing.assert_allclose(second.features, first.features, rtol=1e-5, atol=1e-6)


def test_no_cache_neither_reads_nor_writes(tiny, images, cache_dir):
    result = extractor(tiny, cache_dir, cache=False).extract(images)

    assert result.computed == 5
    assert not cache_dir.exists()


def test_default_cache_lives_under_transferlab_cache_dir(tiny, isolated_cache):
    assert FeatureExtractor(tiny).cache.folder.is_relative_to(isolated_cache)
