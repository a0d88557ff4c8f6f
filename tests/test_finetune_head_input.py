"""Where fine-tuning's new head sits (``--pooling``): on the backbone's pre-logits features (default), on its
last feature map pooled (avg, max) or flattened, as Keras' ``include_top=False`` puts it.

VGG-11 (random weights) at 64 px: its last map is 512 x 2 x 2, so the three inputs have three different sizes
(pre_logits: fc7's 4,096; avg: 512; flatten: 2,048) at a cost of seconds.
"""

from __future__ import annotations

import json

import pytest
import torch

from helpers import make_class_folders, run_cli
from transferlab.errors import UserError
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.freeze import check_on_backbone

VGG = {"backbone": "vgg11", "random_init": True, "image_size": 64, "batch_size": 8, "num_workers": 0,
       "epochs": 1, "freeze": "all", "early_stopping": "none"}


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("head-input") / "data", {"a": 6, "b": 6})


@pytest.mark.parametrize("pooling, dim", [("pre_logits", 4096), ("avg", 512), ("flatten", 512 * 2 * 2)])
def test_the_head_input_decides_the_feature_dim_and_the_classifier(two_classes, tmp_path, pooling, dim):
    result = run_finetune(FinetuneConfig(data=str(two_classes), output=str(tmp_path / "m"), pooling=pooling, **VGG))

    assert result.feature_dim == dim
    bundle = load_bundle(tmp_path / "m")
    linear = [m for m in bundle.model.classifier.modules() if isinstance(m, torch.nn.Linear)]
    assert linear[0].in_features == dim
    assert bundle.meta["feature_dim"] == dim and bundle.meta["head"]["pooling"] == pooling


def test_on_the_feature_map_vggs_fully_connected_layers_are_dropped(two_classes, tmp_path):
    """fc6/fc7 (about 120 M weights) would be trained for nothing: they are not in the model or its counts."""
    kept = run_finetune(FinetuneConfig(data=str(two_classes), output=str(tmp_path / "a"), **VGG))
    dropped = run_finetune(FinetuneConfig(data=str(two_classes), output=str(tmp_path / "b"), pooling="avg", **VGG))

    assert kept.total_parameters - dropped.total_parameters > 100_000_000
    assert not any(k.startswith("pre_logits.") for k in load_bundle(tmp_path / "b").net.state_dict())
    assert (kept.backbone_layers, dropped.backbone_layers) == (9, 8)


def test_a_saved_model_on_the_pooled_map_predicts_as_it_was_trained(two_classes, tmp_path):
    """The bundle rebuilds the same head input: its logits on an image equal the trained run's prediction."""
    result = run_finetune(FinetuneConfig(data=str(two_classes), output=str(tmp_path / "m"), pooling="max", **VGG))
    bundle = load_bundle(tmp_path / "m")
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits = bundle.model(image)
        pooled = bundle.net.forward_features(image).amax((2, 3))
        by_hand = bundle.model.classifier(pooled)
    torch.testing.assert_close(logits, by_hand)
    predicted = {p["path"]: p["predicted"] for p in result.predictions}
    assert len(predicted) == result.test_images


def test_freeze_points_are_checked_against_the_units_the_head_input_leaves():
    """VGG-11 has 9 units with fc6/fc7 (its pre_logits), 8 without: first:9 freezes everything only with them."""
    assert len(check_on_backbone("first:9", "vgg11")) == 1
    with pytest.raises(UserError, match="8 freeze units"):
        check_on_backbone("first:9", "vgg11", "avg")


def test_the_command_line_takes_the_probes_pooling_names(two_classes, tmp_path):
    result = run_cli("finetune", "-d", str(two_classes), "-b", "vgg11", "--random-init", "--image-size", "64",
                     "--epochs", "1", "--freeze", "all", "--pooling", "flatten", "--workers", "0",
                     "--output", str(tmp_path / "m"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["feature_dim"] == 2048


def test_a_class_token_needs_a_vit(two_classes, tmp_path):
    config = FinetuneConfig(data=str(two_classes), output=str(tmp_path / "m"), pooling="token", **VGG)
    with pytest.raises(UserError, match="token"):
        run_finetune(config)


def test_a_model_saved_in_bundle_format_2_loads_with_its_head_where_it_was(two_classes, tmp_path):
    """Format 2 called the pre-logits input ``avg``: such a model loads on pre_logits, its weights fitting."""
    config = FinetuneConfig(data=str(two_classes), output=str(tmp_path / "m"), backbone="test_efficientnet",
                            random_init=True, epochs=1, freeze="all", num_workers=0, early_stopping="none")
    run_finetune(config)
    meta_path = tmp_path / "m" / "transferlab.json"
    meta = json.loads(meta_path.read_text())
    old = {**meta, "format": "transferlab-bundle/2", "head": {**meta["head"], "pooling": "avg"}}
    meta_path.write_text(json.dumps(old))

    bundle = load_bundle(tmp_path / "m")
    assert bundle.meta["head"]["pooling"] == "pre_logits"
    assert bundle.model.feature_dim == 256
