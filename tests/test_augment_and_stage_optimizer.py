"""The amount of rotation and zoom, and a second optimizer for stage 2: each option changes what it names."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from test_finetune import DATA_CONFIG, tiny_config
from transferlab.errors import UserError
from transferlab.finetune import run as finetune_run
from transferlab.finetune.augment import train_transform
from transferlab.finetune.config import FinetuneConfig


@pytest.fixture(scope="module")
def square():
    """A white square in the middle of a black picture: rotation moves its corners, zoom changes its area."""
    image = Image.new("RGB", (64, 64), "black")
    image.paste((255, 255, 255), (16, 16, 48, 48))
    return image


def white_share(tensor) -> float:
    return float((tensor.mean(0) > 0).float().mean())


def spread(transform, image, n=30) -> float:
    torch.manual_seed(0)
    shares = [white_share(transform(image)) for _ in range(n)]
    return max(shares) - min(shares)


def difference_from_upright(transform, image, n=20) -> float:
    upright = train_transform(DATA_CONFIG, ["flip"])  # framed as in evaluation; a flip leaves the square alone
    reference = upright(image)
    torch.manual_seed(0)
    return sum(float((transform(image) - reference).abs().mean()) for _ in range(n)) / n


def test_rotation_sets_how_far_images_turn(square):
    small = difference_from_upright(train_transform(DATA_CONFIG, ["rotate"], rotation=2), square)
    large = difference_from_upright(train_transform(DATA_CONFIG, ["rotate"], rotation=45), square)
    assert large > 3 * small


def test_zoom_scales_the_image_in_and_out_by_up_to_its_amount(square):
    assert spread(train_transform(DATA_CONFIG, ["flip"]), square) == 0.0
    slight = spread(train_transform(DATA_CONFIG, ["zoom"], zoom=0.05), square)
    strong = spread(train_transform(DATA_CONFIG, ["zoom"], zoom=0.5), square)
    assert 0.0 < slight < strong
    torch.manual_seed(0)
    shares = [white_share(train_transform(DATA_CONFIG, ["zoom"], zoom=0.5)(square)) for _ in range(40)]
    assert min(shares) < 0.25 < max(shares)  # the square covers a quarter: smaller and larger both occur


def test_rotation_and_zoom_are_range_checked():
    with pytest.raises(UserError, match="rotation"):
        FinetuneConfig(rotation=0)
    with pytest.raises(UserError, match="zoom"):
        FinetuneConfig(zoom=1.5)


def test_stage2_optimizer_replaces_the_optimizer_after_unfreezing(class_folders, tmp_path, monkeypatch):
    used = []
    build = finetune_run.build_optimizer

    def recording(model, name, *args, **kwargs):
        used.append(name)
        return build(model, name, *args, **kwargs)

    monkeypatch.setattr(finetune_run, "build_optimizer", recording)
    finetune_run.run_finetune(tiny_config(class_folders, tmp_path / "a", freeze="two-stage", epochs=1,
                                          stage2_optimizer="rmsprop"))
    finetune_run.run_finetune(tiny_config(class_folders, tmp_path / "b", freeze="two-stage", epochs=1))
    assert used == ["adam", "rmsprop", "adam", "adam"]
