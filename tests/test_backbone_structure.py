"""A backbone's structure as timm defines it, on every family: freeze units, feature layers, pre-logits features,
the run-from-unit paths of the frozen-prefix cache, and features at any layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import write_image
from transferlab import UserError
from transferlab.backbones import load_backbone
from transferlab.backbones.paths import build_path
from transferlab.features import FeatureExtractor

# timm's small test models of each family, plus two real architectures whose pre-logits differ from num_features.
FAMILIES = ["test_vit", "test_convnext", "test_efficientnet", "test_resnet", "test_byobnet", "mobilenetv3_small_050",
            "small-cnn"]


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request):
    return load_backbone(request.param, random_init=True)


def test_lite0_units_are_timms_parameter_groups(lite0):
    names = [unit.name for unit in lite0.units]

    assert len(names) == 17
    assert names[0] == "conv_stem+bn1"
    blocks = [f"blocks.{stage}.{b}" for stage, n in enumerate([1, 2, 2, 3, 3, 4, 1]) for b in range(n)]
    assert names[1:] == blocks[:-1] + ["blocks.6.0+conv_head+bn2"]  # timm joins the neck to the last block
    assert sum(u.parameters for u in lite0.units) == lite0.backbone_parameters()


def test_units_cover_every_backbone_parameter_once_and_never_the_classifier(backbone):
    names = [n for unit in backbone.units for n in unit.parameter_names]
    classifier = {id(p) for p in backbone.model.get_classifier().parameters()}
    expected = [n for n, p in backbone.model.named_parameters() if id(p) not in classifier]

    assert sorted(names) == sorted(expected) and len(set(names)) == len(names)
    assert len(backbone.units) >= 3


def test_feature_layers_come_from_forward_intermediates(backbone):
    layers = backbone.feature_layers

    assert len(layers) >= 3
    assert all(len(layer.shape) == 3 for layer in layers)
    assert backbone.find_feature_layer(layers[1].name) == layers[1]
    assert backbone.find_feature_layer(-1) == layers[-1]


def test_an_unknown_layer_names_the_ones_there_are(backbone):
    with pytest.raises(UserError, match="use pre_logits, logits, a feature layer 0"):
        backbone.find_feature_layer(99)


def test_every_family_has_a_path_that_equals_the_models_own_forward(backbone):
    """The frozen-prefix cache runs the model from a unit on; the path is checked against timm's forward."""
    path = build_path(backbone.model, backbone.units, backbone.input_size)
    assert path is not None, f"no run-from-unit path for {type(backbone.model).__name__}"
    x = torch.randn(2, *backbone.input_size, generator=torch.Generator().manual_seed(1))
    middle = path.prefix_steps(len(backbone.units) // 2)

    with torch.no_grad():
        expected = backbone.model.forward_head(backbone.model.forward_features(x), pre_logits=True)
        piecewise = path.run(path.run(x, 0, middle), middle)

    assert 0 < middle < len(path)
    torch.testing.assert_close(piecewise, expected, rtol=1e-4, atol=1e-5)


def test_freezing_every_unit_caches_the_pre_logits_features(backbone):
    path = build_path(backbone.model, backbone.units, backbone.input_size)
    assert path.prefix_steps(len(backbone.units)) == len(path)
    assert path.prefix_steps(0) == 0 or path.step_units[0] == 0


@pytest.mark.parametrize("name, dim", [("vgg11", 4096), ("mobilenetv3_small_050", 1024)])
def test_pre_logits_dimension_is_timms_head_hidden_size(name, dim):
    """VGG keeps its fc6/fc7 and MobileNetV3 its conv_head: the features are timm's pre-logits."""
    backbone = load_backbone(name, random_init=True)
    x = torch.zeros(1, *backbone.input_size)

    with torch.no_grad():
        features = backbone.model.forward_head(backbone.model.forward_features(x), pre_logits=True)

    assert backbone.feature_dim == features.shape[1] == dim


@pytest.fixture
def images(tmp_path):
    return [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]


@pytest.mark.parametrize("layer", ["pre_logits", "logits", "0", "1", "-1"])
@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_features_of_any_layer_have_the_announced_dimension(backbone, images, tmp_path, layer, pooling):
    extractor = FeatureExtractor(backbone, layer=layer, pooling=pooling, num_workers=0, cache_root=tmp_path / "c")

    features = extractor.extract(images).features

    assert features.shape == (3, extractor.dim)
    assert np.isfinite(features).all()


def test_vit_class_token_is_a_pooling_and_cnns_have_none(images, tmp_path):
    vit = load_backbone("test_vit", random_init=True)
    extractor = FeatureExtractor(vit, layer=2, pooling="token", num_workers=0, cache_root=tmp_path / "c")
    token = extractor.extract(images).features
    average = FeatureExtractor(vit, layer=2, pooling="avg", num_workers=0, cache_root=tmp_path / "c").extract(images)

    assert token.shape == (3, 64) and not np.allclose(token, average.features)
    with pytest.raises(UserError, match="class token"):
        FeatureExtractor(load_backbone("test_resnet", random_init=True), layer=2, pooling="token")


def test_intermediate_features_are_the_pooled_forward_intermediates(lite0, images, tmp_path):
    extractor = FeatureExtractor(lite0, layer="blocks.4", pooling="max", num_workers=0, cache=False)
    from PIL import Image

    x = torch.stack([lite0.transform()(Image.open(p).convert("RGB")) for p in images])

    with torch.no_grad():
        maps = lite0.model.forward_intermediates(x, indices=[3], intermediates_only=True)[0]

    np.testing.assert_allclose(extractor.features(x), maps.amax(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    assert extractor.dim == 112
