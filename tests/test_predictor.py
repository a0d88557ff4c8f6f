"""``transferlab.Predictor``: a saved model classifies paths, PIL images and arrays as ``transferlab predict`` does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_class_folders
from transferlab import Predictor, UserError
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.gradcam import grad_cam


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fine-tuned bundle at 96 px (its backbone's own default is 160 px) and its training images (32 px)."""
    root = tmp_path_factory.mktemp("predictor")
    data = make_class_folders(root / "data", {"a": 8, "b": 8, "c": 8})
    run_finetune(FinetuneConfig(data=str(data), output=str(root / "m"), backbone="test_efficientnet",
                                random_init=True, image_size=96, epochs=2, freeze="none", batch_size=8, num_workers=0,
                                early_stopping="none"))
    return root


def images(saved):
    return sorted((saved / "data").rglob("*.png"))


def test_predict_gives_what_the_predict_command_gives(saved, cli):
    files = images(saved)[::5]
    result = cli("predict", str(saved / "m"), *map(str, files), "--top-k", "3", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    model = Predictor.load(saved / "m", device="cpu")
    for item, path in zip(json.loads(result.stdout), files):
        prediction = model.predict(path)
        assert prediction.label == item["top"][0]["label"]
        assert [label for label, _ in prediction.top] == [g["label"] for g in item["top"]]
        assert [round(p, 4) for _, p in prediction.top] == pytest.approx([g["probability"] for g in item["top"]])


def test_predict_uses_the_bundles_image_size_and_preprocessing(saved):
    """The model's own forward pass on the image resized, cropped and normalised as the bundle says (96 px)."""
    bundle = load_bundle(saved / "m")
    transform = bundle.transform()
    assert transform.img_size == (96, 96)
    model = Predictor.load(saved / "m", device="cpu", precision="fp32")
    for path in images(saved)[::4]:
        with torch.no_grad():
            expected = bundle.net(transform(Image.open(path)).unsqueeze(0)).softmax(1)[0]
        got = model.predict(path).probabilities
        assert list(got) == model.classes
        assert list(got.values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_a_pil_image_and_an_array_are_classified_as_their_file(saved):
    model = Predictor.load(saved / "m", device="cpu", top_k=2)
    path = images(saved)[3]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    from_file, from_pil, from_array = model.predict(path), model.predict(Image.open(path)), model.predict(pixels)
    assert len(from_file.top) == 2 and from_file.probability == from_file.top[0][1]
    for other in (from_pil, from_array):
        assert other.label == from_file.label
        assert list(other.probabilities.values()) == pytest.approx(list(from_file.probabilities.values()), abs=1e-5)
    # a different picture is a different input (the array's pixels are what is classified)
    flipped = model.predict(np.ascontiguousarray(pixels[..., ::-1]))
    assert list(flipped.probabilities.values()) != pytest.approx(list(from_file.probabilities.values()), abs=1e-5)


def test_predict_batch_keeps_the_order_and_marks_unreadable_files(saved, tmp_path):
    model = Predictor.load(saved / "m", device="cpu")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    files = images(saved)[:3]
    batch = model.predict_batch([files[0], broken, Image.open(files[1]), np.asarray(Image.open(files[2]))])
    assert batch[1] is None
    assert [p.label for p in (batch[0], batch[2], batch[3])] == [model.predict(f).label for f in files]
    with pytest.raises(UserError, match="cannot read"):
        model.predict(broken)


def test_gradcam_is_the_heat_map_of_the_predicted_class_at_the_models_input_size(saved):
    model = Predictor.load(saved / "m", device="cpu")
    path = images(saved)[0]
    heat = model.gradcam(path)
    assert heat.shape == (96, 96) and 0.0 <= heat.min() and heat.max() <= 1.0
    bundle = load_bundle(saved / "m")
    image = bundle.transform()(Image.open(path))
    expected = grad_cam(bundle.net, image, bundle.classes.index(model.predict(path).label))
    np.testing.assert_allclose(heat, expected, atol=1e-5)
    other = next(c for c in model.classes if c != model.predict(path).label)
    np.testing.assert_allclose(model.gradcam(np.asarray(Image.open(path).convert("RGB")), other),
                               grad_cam(bundle.net, image, bundle.classes.index(other)), atol=1e-5)


@pytest.mark.parametrize("image, message", [
    (object(), "file path, a PIL image or a numpy array"),
    (np.zeros((8, 8, 3), np.float32), "must be uint8"),
    (np.zeros((8, 8, 2), np.uint8), "H x W x 3"),
    ("no/such/image.png", "no image file"),
])
def test_bad_images_are_one_clear_error(saved, image, message):
    with pytest.raises(UserError, match=message):
        Predictor.load(saved / "m", device="cpu").predict(image)


def test_gradcam_refuses_an_unknown_class(saved):
    with pytest.raises(UserError, match="not a class of this model"):
        Predictor.load(saved / "m", device="cpu").gradcam(images(saved)[0], "zebra")


def test_loading_a_folder_without_a_model_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no transferlab model"):
        Predictor.load(tmp_path)


def test_importing_transferlab_stays_cheap():
    code = ("import sys, transferlab; assert 'torch' not in sys.modules; "
            "assert 'Predictor' in transferlab.__all__; print(transferlab.Predictor.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "transferlab.predictor"
