"""The layer view: a backbone's feature path as an ordered list of layers, and features taken from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import write_image
from transferlab import UserError
from transferlab.features import FeatureExtractor


def test_lite0_has_20_layers_stem_blocks_and_head(lite0):
    names = [layer.name for layer in lite0.require_layer_view().layers]

    assert len(names) == 20
    assert names[:2] == ["conv_stem", "bn1"]
    assert names[-2:] == ["conv_head", "bn2"]
    assert sum(name.startswith("blocks.") for name in names) == 16


def test_running_the_layers_in_sequence_equals_forward_features(lite0):
    view = lite0.require_layer_view()
    x = torch.randn(1, *lite0.input_size, generator=torch.Generator().manual_seed(3))

    with torch.inference_mode():
        expected = lite0.model.forward_features(x)
        piecewise = view.run(view.run(x, 0, 10), 10)

    torch.testing.assert_close(piecewise, expected, rtol=1e-4, atol=1e-5)


def test_layer_table_shapes_are_the_real_output_shapes(lite0):
    view = lite0.require_layer_view()
    x = torch.randn(1, *lite0.input_size)
    with torch.inference_mode():
        for layer in view.layers:
            x = view.run(x, layer.index, layer.index + 1)
            assert tuple(x.shape[1:]) == layer.output_shape, layer.name


def test_layer_found_by_index_negative_index_or_name(lite0):
    view = lite0.require_layer_view()

    assert view.find(-1).name == "bn2"
    assert view.find("3").name == view.layers[3].name
    assert view.find(view.layers[5].name).index == 5


def test_unknown_layer_is_a_user_error(lite0):
    with pytest.raises(UserError, match="unknown layer"):
        lite0.require_layer_view().find(20)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_intermediate_layer_features_have_the_dimension_the_layer_table_gives(lite0, tmp_path, pooling):
    layer = lite0.require_layer_view().layers[10]
    c, h, w = layer.output_shape
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    extractor = FeatureExtractor(lite0, layer=10, pooling=pooling, num_workers=0, cache=False)

    features = extractor.extract(paths).features

    expected = c * h * w if pooling == "flatten" else c
    assert features.shape == (2, expected)
    assert extractor.dim == expected
    assert np.isfinite(features).all()


def test_max_pooling_is_at_least_avg_pooling(tiny, tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(2)]
    avg = FeatureExtractor(tiny, layer=4, pooling="avg", num_workers=0, cache=False).extract(paths).features
    top = FeatureExtractor(tiny, layer=4, pooling="max", num_workers=0, cache=False).extract(paths).features

    assert (top >= avg - 1e-6).all() and (top > avg + 1e-6).any()


def test_pre_logits_features_have_the_models_feature_dim_and_logits_1000(tiny, tmp_path):
    paths = [write_image(tmp_path / "0.png", seed=0)]

    pooled = FeatureExtractor(tiny, num_workers=0, cache=False).extract(paths).features
    logits = FeatureExtractor(tiny, layer="logits", num_workers=0, cache=False).extract(paths).features

    assert pooled.shape == (1, tiny.feature_dim)
    assert logits.shape == (1, 1000)


def test_unknown_pooling_is_a_user_error(tiny):
    with pytest.raises(UserError, match="unknown pooling 'mean'"):
        FeatureExtractor(tiny, layer=3, pooling="mean")
