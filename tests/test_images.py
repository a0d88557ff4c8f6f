"""Decoding: any image file becomes an upright 8-bit RGB picture, or is skipped and reported.

Both decoders are held to it: ``open_rgb`` (PIL images, for PIL transforms) and
``decode_rgb`` (uint8 tensors, for the tensor transform).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import make_class_folders
from transferlab import probe
from transferlab.data import UnreadableImage, decode_rgb, open_rgb
from transferlab.features import FeatureExtractor

WIDTH, HEIGHT = 30, 20


@pytest.fixture(params=["open_rgb", "decode_rgb"])
def decode(request):
    """path -> PIL image, through one of the two decoders."""
    if request.param == "open_rgb":
        return open_rgb
    return lambda path: Image.fromarray(decode_rgb(path).permute(1, 2, 0).numpy())


def gradient(mode_max: int = 255) -> np.ndarray:
    return np.linspace(0, mode_max, WIDTH * HEIGHT).reshape(HEIGHT, WIDTH)


def assert_rgb8(image: Image.Image, size=(WIDTH, HEIGHT)) -> np.ndarray:
    pixels = np.asarray(image)
    assert image.mode == "RGB"
    assert image.size == size
    assert pixels.dtype == np.uint8 and pixels.shape == (size[1], size[0], 3)
    return pixels


def test_greyscale_decodes_to_rgb(tmp_path, decode):
    path = tmp_path / "grey.png"
    Image.fromarray(gradient().astype(np.uint8), mode="L").save(path)

    pixels = assert_rgb8(decode(path))

    assert (pixels[..., 0] == pixels[..., 1]).all() and pixels.max() == 255


def test_palette_gif_decodes_to_rgb(tmp_path, decode):
    path = tmp_path / "palette.gif"
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, : WIDTH // 2] = (255, 0, 0)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)

    pixels = assert_rgb8(decode(path))

    assert tuple(pixels[0, 0]) == (255, 0, 0)


def test_rgba_decodes_to_rgb_with_transparency_on_white(tmp_path, decode):
    path = tmp_path / "alpha.png"
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., 2] = 255  # blue
    rgba[:, : WIDTH // 2, 3] = 255  # left half opaque, right half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(path)

    pixels = assert_rgb8(decode(path))

    assert tuple(pixels[0, 0]) == (0, 0, 255)
    assert tuple(pixels[0, -1]) == (255, 255, 255)


def test_cmyk_jpeg_decodes_to_rgb(tmp_path, decode):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (WIDTH, HEIGHT), (200, 30, 30)).convert("CMYK").save(path)
    assert Image.open(path).mode == "CMYK"

    pixels = assert_rgb8(decode(path))

    assert pixels[..., 0].mean() > 150 and pixels[..., 1].mean() < 80


def test_16_bit_png_is_rescaled_to_8_bits_not_clipped(tmp_path, decode):
    path = tmp_path / "deep.png"
    Image.fromarray(gradient(65535).astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")

    pixels = assert_rgb8(decode(path))

    assert pixels.max() == 255
    assert 100 < np.median(pixels) < 155  # a clipped decode is white almost everywhere


def test_exif_orientation_is_applied(tmp_path, decode):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (WIDTH, HEIGHT), (10, 120, 200)).save(path, exif=exif)

    assert_rgb8(decode(path), size=(HEIGHT, WIDTH))


def test_min_size_decodes_a_large_jpeg_at_reduced_scale(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (1000, 700), (10, 120, 200)).save(big)
    Image.new("RGB", (1000, 700), (10, 120, 200)).save(tmp_path / "big.png")

    assert open_rgb(big, min_size=170).size == (250, 175)  # 1/4: the short side stays >= 170
    assert open_rgb(big, min_size=200).size == (500, 350)  # 1/2
    assert open_rgb(big, min_size=400).size == (1000, 700)  # 1/2 would go under 400
    assert open_rgb(tmp_path / "big.png", min_size=100).size == (1000, 700)  # JPEGs only
    assert tuple(decode_rgb(big, min_size=170).shape) == (3, 175, 250)


def test_corrupt_file_is_unreadable(tmp_path, decode):
    path = tmp_path / "x.jpg"
    path.write_bytes(np.random.default_rng(0).bytes(2000))

    with pytest.raises(UnreadableImage, match="x.jpg"):
        decode(path)


def test_truncated_jpeg_is_unreadable(tmp_path, decode):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:3000])

    with pytest.raises(UnreadableImage):
        decode(path)


@pytest.fixture
def junk_files(tmp_path):
    corrupt = tmp_path / "x.jpg"
    corrupt.write_bytes(np.random.default_rng(1).bytes(2000))
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    return [corrupt, text]


def test_extraction_skips_unreadable_files_and_reports_them(tiny, tmp_path, junk_files):
    good = make_class_folders(tmp_path / "good", {"a": 3})
    images = sorted((good / "a").glob("*.png"))
    order = [images[0], junk_files[0], images[1], junk_files[1], images[2]]

    result = FeatureExtractor(tiny, num_workers=0, batch_size=2, cache=False).extract(order)

    assert result.unreadable == junk_files
    assert result.kept == [0, 2, 4]
    assert result.features.shape == (3, tiny.feature_dim)


def test_extraction_of_only_unreadable_files_gives_an_empty_feature_set(tiny, junk_files):
    result = FeatureExtractor(tiny, num_workers=0, cache=False).extract(junk_files)

    assert result.features.shape == (0, tiny.feature_dim)
    assert result.unreadable == junk_files


def test_probe_counts_unreadable_files_instead_of_crashing(tmp_path):
    data = make_class_folders(tmp_path / "data", {"a": 10, "b": 10})
    (data / "a" / "x.jpg").write_bytes(np.random.default_rng(2).bytes(2000))
    (data / "b" / "readme.txt").write_text("not an image\n")

    # no validation split: a logreg head looks at every file in train or test
    result = probe(data, backbone="test_efficientnet", random_init=True, ratios=(0.7, 0.0, 0.3), num_workers=0)

    assert result.unreadable_count == 2
    assert {p.rsplit("/", 1)[-1] for p in result.unreadable_examples} == {"x.jpg", "readme.txt"}
    assert result.train_images + result.test_images == 20
