"""Grad-CAM heat maps of a fine-tuned bundle, in ``predict --gradcam``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.gradcam import grad_cam


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from helpers import make_class_folders

    root = tmp_path_factory.mktemp("gradcam")
    data = make_class_folders(root / "data", {"a": 8, "b": 8, "c": 8})
    run_finetune(FinetuneConfig(data=str(data), output=str(root / "m"), backbone="test_efficientnet",
                                random_init=True, image_size=96, epochs=2, freeze="none", batch_size=8, num_workers=0,
                                early_stopping="none", augment=[]))
    return root


def test_the_heat_map_has_the_input_size_and_lies_in_0_1(bundle_dir):
    bundle = load_bundle(bundle_dir / "m")
    image = bundle.transform()(Image.open(next((bundle_dir / "data" / "a").iterdir())))
    predicted = int(bundle.model(image[None]).argmax())
    heat = grad_cam(bundle.net, image, predicted)
    assert heat.shape == (96, 96)
    assert heat.min() >= 0 and np.isclose(heat.max(), 1.0)


class TwoChannels(torch.nn.Module):
    """Class 0 reads feature channel 0, class 1 channel 1: the image's first two channels."""

    def forward_features(self, x):
        return x[:, :2] * 1.0

    def forward_head(self, features):
        return features.mean(dim=(2, 3))


def test_the_heat_map_shows_where_the_class_evidence_is():
    image = torch.zeros(3, 8, 8)
    image[0, :, :4] = 1.0  # class 0's channel is lit on the left half
    image[1, :, 4:] = 1.0  # class 1's on the right half
    left, right = grad_cam(TwoChannels(), image, 0), grad_cam(TwoChannels(), image, 1)
    assert left.shape == right.shape == (8, 8)
    assert left[:, :3].min() > 0.9 and left[:, 5:].max() < 0.1
    assert right[:, 5:].min() > 0.9 and right[:, :3].max() < 0.1


def test_the_heat_map_of_a_fine_tuned_model_changes_with_the_class(bundle_dir):
    bundle = load_bundle(bundle_dir / "m")
    image = bundle.transform()(Image.open(next((bundle_dir / "data" / "a").iterdir())))
    maps = [grad_cam(bundle.net, image, c) for c in range(3)]
    assert sum(not np.allclose(maps[a], maps[b]) for a, b in ((0, 1), (1, 2), (0, 2))) >= 2


def test_predict_writes_a_heat_map_png_per_image(cli, bundle_dir, tmp_path):
    images = bundle_dir / "data" / "b"
    result = cli("predict", str(bundle_dir / "m"), str(images), "--gradcam", str(tmp_path / "cams"), "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 8 and all("gradcam" in r for r in records)
    written = sorted((tmp_path / "cams").glob("*.png"))
    assert len(written) == 8
    with Image.open(written[0]) as picture:
        assert picture.size == (96, 96) and picture.mode == "RGB"
    assert records[0]["top"][0]["label"] in records[0]["gradcam"]


def test_predict_refuses_a_gradcam_folder_that_holds_files(cli, bundle_dir, tmp_path):
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "earlier.png").write_bytes(b"x")
    result = cli("predict", str(bundle_dir / "m"), str(bundle_dir / "data" / "b"), "--gradcam", str(tmp_path / "cams"))
    assert result.returncode == 2 and "not an empty folder" in result.stderr
    assert (tmp_path / "cams" / "earlier.png").read_bytes() == b"x"
