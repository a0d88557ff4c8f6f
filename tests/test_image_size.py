"""``--image-size N``: the preprocessing, the feature cache, the model and the bundle all follow the resolution.

The tiny timm test models are trained at 160 px, so these tests ask for 96 px: a size the
weights' own configuration would never give.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.backbones import load_backbone
from transferlab.errors import UserError
from transferlab.features import FeatureExtractor
from transferlab.finetune import FinetuneConfig, load_bundle
from transferlab.finetune.model import TransferModel
from transferlab.probing.config import ProbeConfig
from transferlab.study import load_study, plan_study


def input_sizes(monkeypatch) -> list[tuple[int, int]]:
    """The (height, width) of every batch of images entering a fine-tuned model (whole or its frozen prefix)."""
    seen: list[tuple[int, int]] = []
    forward, prefix = TransferModel.forward, TransferModel.prefix

    def recording_forward(self, x, start=0):
        if start == 0:
            seen.append(tuple(x.shape[-2:]))
        return forward(self, x, start)

    def recording_prefix(self, x, steps):
        seen.append(tuple(x.shape[-2:]))
        return prefix(self, x, steps)

    monkeypatch.setattr(TransferModel, "forward", recording_forward)
    monkeypatch.setattr(TransferModel, "prefix", recording_prefix)
    return seen


def test_the_preprocessing_follows_the_image_size():
    backbone = load_backbone("test_efficientnet", random_init=True, image_size=96)
    assert backbone.input_size == (3, 96, 96)
    transform = backbone.eval_transform()
    picture = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8)  # a small image is upscaled
    assert transform(picture).shape == (3, 96, 96)
    assert transform.scale_size == (int(96 / backbone.data_config["crop_pct"]),) * 2
    default = load_backbone("test_efficientnet", random_init=True)
    assert default.input_size == (3, 160, 160)


def test_the_feature_cache_key_follows_the_image_size(tmp_path):
    keys = {size: FeatureExtractor(load_backbone("test_efficientnet", random_init=True, image_size=size),
                                   cache_root=tmp_path).cache.key
            for size in (None, 64, 96)}
    assert len(set(keys.values())) == 3


def test_a_vit_is_built_for_the_image_size():
    backbone = load_backbone("test_vit", random_init=True, image_size=96)
    assert tuple(backbone.model.patch_embed.img_size) == (96, 96)
    features = FeatureExtractor(backbone, cache=False).features(torch.zeros(2, 3, 96, 96))
    assert features.shape == (2, backbone.feature_dim)


def test_a_vit_weights_file_is_resampled_to_the_image_size(tmp_path):
    trained = timm.create_model("test_vit", pretrained=False)  # its own 160 px position embeddings
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    backbone = load_backbone("test_vit", weights=str(tmp_path / "vit.safetensors"), image_size=96)
    assert backbone.model.pos_embed.shape[1] < trained.pos_embed.shape[1]  # fewer patches at 96 px
    assert torch.equal(backbone.model.patch_embed.proj.weight, trained.patch_embed.proj.weight)


@pytest.mark.parametrize("size", [8, 4096])
def test_an_image_size_out_of_range_is_a_user_error(size):
    with pytest.raises(UserError, match="image_size"):
        ProbeConfig(image_size=size)


def test_the_image_size_decides_the_run_identity():
    assert FinetuneConfig(image_size=96) != FinetuneConfig()
    from transferlab.finetune.run import config_id

    assert config_id(FinetuneConfig(image_size=96)) != config_id(FinetuneConfig())


def test_finetune_trains_and_predicts_at_the_image_size(cli, class_folders, tmp_path, monkeypatch):
    seen = input_sizes(monkeypatch)
    out = tmp_path / "m"
    result = cli("finetune", "--data", str(class_folders), "--backbone", "test_efficientnet", "--random-init",
                 "--epochs", "1", "--freeze", "half", "--image-size", "96", "--batch-size", "16", "--workers", "0",
                 "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert seen and set(seen) == {(96, 96)}  # training, validation and test images
    assert json.loads((out / "transferlab.json").read_text())["preprocessing"]["input_size"] == [3, 96, 96]
    assert json.loads((out / "config.json").read_text())["pretrained_cfg"]["input_size"] == [3, 96, 96]

    seen.clear()
    predicted = cli("predict", str(out), str(class_folders / "a"), "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert seen and set(seen) == {(96, 96)}


def test_a_vit_bundle_loads_at_its_image_size(class_folders, tmp_path):
    from transferlab.finetune import run_finetune

    run_finetune(FinetuneConfig(data=str(class_folders), output=str(tmp_path / "vit"), backbone="test_vit",
                                random_init=True, image_size=64, epochs=1, freeze="all", batch_size=16,
                                num_workers=0, early_stopping="none"))
    bundle = load_bundle(tmp_path / "vit")
    assert tuple(bundle.net.patch_embed.img_size) == (64, 64)
    assert bundle.model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_image_size_is_a_study_axis(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        data: data
        backbones: [{TINY_BACKBONE}]
        methods:
          - {{kind: probe}}
          - {{kind: finetune, epochs: 1}}
        sweep:
          image_size: [64, 96]
        """)
    plan = plan_study(load_study(study), str(data))
    sizes = sorted((run.runner, run.config.image_size) for run in plan.runs)
    assert sizes == [("finetune", 64), ("finetune", 96), ("probe", 64), ("probe", 96)]
    assert len({run.run_id for run in plan.runs}) == 4
    assert all(run.axes == {"image_size": run.config.image_size} for run in plan.runs)


def test_probe_extracts_features_at_the_image_size(class_folders, isolated_cache, monkeypatch):
    from transferlab.features import extract
    from transferlab.probing import probe

    shapes: list[tuple[int, int]] = []
    forward = extract.FeatureExtractor.forward
    monkeypatch.setattr(extract.FeatureExtractor, "forward",
                        lambda self, x: shapes.append(tuple(x.shape[-2:])) or forward(self, x))
    result = probe(class_folders, backbone="test_efficientnet", random_init=True, image_size=96, num_workers=0,
                   cache=False)
    assert result.config["image_size"] == 96
    assert shapes and set(shapes) == {(96, 96)}


@pytest.mark.parametrize("augment", [["flip"], ["crop", "rotate"]])
def test_the_training_augmentation_follows_the_image_size(augment):
    from PIL import Image

    from transferlab.finetune.augment import train_transform

    backbone = load_backbone("test_efficientnet", random_init=True, image_size=96)
    transform = train_transform(backbone.data_config, augment)
    assert transform(Image.new("RGB", (32, 32), (200, 10, 10))).shape == (3, 96, 96)
