"""The tensor data path: decode_rgb + TensorEvalTransform against open_rgb + timm's PIL eval transform.

Bounds, measured on these pictures and stated in uint8 levels (1 level = 1 / 255 / std
in normalised units: 0.0078 for Lite0's mean = std = 0.5, 0.0175 for ImageNet's std):
- full-size decoding, resize factors equal in both directions (timm's ``center`` and
  ``border`` modes, every common backbone): at most 2 levels at a pixel (measured
  1-2: max abs 0.0157 for Lite0 bicubic, 0.0175 for ImageNet bilinear) and at most
  0.02 levels averaged over an image (measured mean abs 2.4e-5 for Lite0, 3.0e-5 for
  ImageNet bilinear, in normalised units): the same arithmetic rounded differently;
- ``squash`` with unequal factors: PIL and torch round and clip their two separable
  passes differently at sharp edges: up to 8 levels (measured 6) at a pixel, at most
  0.25 levels (measured 0.20) on average;
- reduced-scale JPEG decoding (libjpeg DCT scaling, then the usual resize, Lite0),
  normalised units: max abs <= 1.0 (measured 0.62), mean abs <= 0.05 (measured 0.037).
"""

from __future__ import annotations

import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from timm.data import create_transform

from transferlab.data import TensorEvalTransform, UnreadableImage, decode_rgb, image_batches, open_rgb
from transferlab.data import decode as decode_module

LITE0 = dict(
    input_size=(3, 224, 224),
    interpolation="bicubic",
    mean=(0.5,) * 3,
    std=(0.5,) * 3,
    crop_pct=0.875,
    crop_mode="center",
)
IMAGENET_BILINEAR = dict(
    input_size=(3, 224, 224),
    interpolation="bilinear",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    crop_pct=0.875,
    crop_mode="center",
)
CONFIGS = {
    "lite0-bicubic": LITE0,
    "imagenet-bilinear": IMAGENET_BILINEAR,
    "squash": dict(LITE0, crop_mode="squash", crop_pct=0.95),
    "border": dict(IMAGENET_BILINEAR, crop_mode="border", crop_pct=1.0),
    "non-square": dict(LITE0, input_size=(3, 200, 256)),
    "trim-border": dict(LITE0, crop_border_pixels=6),
    "lanczos": dict(LITE0, interpolation="lanczos"),
    "box (PIL resize)": dict(LITE0, interpolation="box"),
}
MAX_LEVELS = 2.0  # uint8 levels at one pixel, full-size decoding
MEAN_LEVELS = 0.02  # uint8 levels averaged over an image, full-size decoding
SQUASH_MAX_LEVELS, SQUASH_MEAN_LEVELS = 8.0, 0.25
DRAFT_MAX = 1.0  # normalised units, reduced-scale decoding (Lite0)
DRAFT_MEAN = 0.05


def _save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def _save_rgb48_png(pixels: np.ndarray, path):
    """A 16-bit-per-channel RGB PNG (PIL cannot write one): PIL reads it as 8-bit RGB."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, object]:
    """Photos and odd files, as JPEG and PNG at several sizes and aspects."""
    root = tmp_path_factory.mktemp("pictures")
    chelsea, coffee, astronaut = (Image.fromarray(a) for a in (skdata.chelsea(), skdata.coffee(), skdata.astronaut()))
    files = {
        "chelsea.jpg": _save(chelsea, root / "chelsea.jpg", quality=90),  # 451 x 300
        "chelsea.png": _save(chelsea, root / "chelsea.png"),
        "coffee-small.jpg": _save(coffee.resize((200, 133)), root / "coffee-small.jpg"),  # upsampled by the resize
        "coffee-tall.png": _save(coffee.crop((100, 0, 300, 400)), root / "coffee-tall.png"),
        "astronaut.jpg": _save(astronaut, root / "astronaut.jpg", quality=95),
        "astronaut-wide.png": _save(astronaut.resize((700, 300)), root / "astronaut-wide.png"),
        "grey.jpg": _save(chelsea.convert("L"), root / "grey.jpg"),
        "grey.png": _save(coffee.convert("L"), root / "grey.png"),
        "cmyk.jpg": _save(coffee.convert("CMYK"), root / "cmyk.jpg"),
        "palette.gif": _save(chelsea.convert("P", palette=Image.Palette.ADAPTIVE), root / "palette.gif"),
        "deep.png": _save(Image.fromarray(np.asarray(coffee.convert("L"), np.uint16) * 200), root / "deep.png"),
        "rgb48.png": _save_rgb48_png(np.asarray(chelsea, np.uint16) * 257 + 100, root / "rgb48.png"),
    }
    files["camera.jpg"] = root / "camera.jpg"  # a multi-picture JPEG (MPO), as cameras write: the first picture
    chelsea.save(files["camera.jpg"], format="MPO", save_all=True, append_images=[coffee.resize(chelsea.size)])
    rgba = np.dstack(
        [np.asarray(chelsea), np.tile(np.linspace(0, 255, chelsea.width, dtype=np.uint8), (chelsea.height, 1))]
    )
    files["rgba.png"] = _save(Image.fromarray(rgba, mode="RGBA"), root / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    files["rotated.jpg"] = _save(coffee, root / "rotated.jpg", exif=exif)
    files["rotated.png"] = _save(coffee, root / "rotated.png", exif=exif)
    # large JPEGs: decoded at 1/4 (1200 -> 300) and 1/2 (coffee 1200 x 800 -> 600 x 400) with min_size 256
    files["astronaut-large.jpg"] = _save(
        astronaut.resize((1200, 1200), Image.Resampling.BICUBIC), root / "astronaut-large.jpg"
    )
    files["coffee-large.jpg"] = _save(coffee.resize((1200, 800), Image.Resampling.BICUBIC), root / "coffee-large.jpg")
    exif_large = Image.Exif()
    exif_large[0x0112] = 8
    files["chelsea-large-rotated.jpg"] = _save(
        chelsea.resize((1353, 900), Image.Resampling.BICUBIC), root / "chelsea-large-rotated.jpg", exif=exif_large
    )
    return files


def as_array(tensor: torch.Tensor) -> np.ndarray:
    assert tensor.dtype == torch.uint8 and tensor.ndim == 3 and tensor.shape[0] == 3
    return tensor.permute(1, 2, 0).numpy()


@pytest.fixture(params=["default", "torchvision", "torchcodec", "pil"])
def decoder(request, monkeypatch) -> str:
    """decode_rgb with each fast decoder available here, and with none (PIL for everything)."""
    name = request.param
    if name == "default":
        return decode_module.fast_decoder_name()
    fast = None if name == "pil" else decode_module.load_fast_decoder(name)
    if name != "pil" and fast is None:
        pytest.skip(f"{name} cannot decode images here")
    monkeypatch.setattr(decode_module, "_fast_decoder", lambda: (name, fast))
    return name


def test_decode_rgb_gives_open_rgbs_picture(pictures, decoder):
    for name, path in pictures.items():
        expected = np.asarray(open_rgb(path))
        got = as_array(decode_rgb(path))
        assert got.shape == expected.shape, name
        levels = np.abs(got.astype(int) - expected)
        if name.endswith(".jpg"):  # two builds of libjpeg-turbo may round the IDCT differently
            assert levels.max() <= 2 and levels.mean() < 0.05, name
        else:
            assert levels.max() == 0, name


def test_plain_jpeg_and_png_take_the_fast_decoder(pictures, monkeypatch):
    if decode_module.fast_decoder_name() == "pil":
        pytest.skip("no fast decoder here")
    calls = []
    name, fast = decode_module._fast_decoder()
    monkeypatch.setattr(
        decode_module, "_fast_decoder", lambda: (name, lambda kind, data: calls.append(kind) or fast(kind, data))
    )

    plain = ("chelsea.jpg", "grey.jpg", "rotated.jpg", "camera.jpg", "chelsea.png", "grey.png")
    for file in plain + ("cmyk.jpg", "rgba.png", "deep.png", "palette.gif"):
        decode_rgb(pictures[file])
    assert calls == ["jpeg", "jpeg", "jpeg", "jpeg", "png", "png"]  # the odd ones go to PIL straight away

    calls.clear()
    assert np.array_equal(as_array(decode_rgb(pictures["rgb48.png"])), np.asarray(open_rgb(pictures["rgb48.png"])))
    assert calls == ["png"]  # tried, came back 16-bit: PIL's 8-bit reading instead


def test_exif_orientation_is_applied(pictures, decoder):
    for name in ("rotated.jpg", "rotated.png"):
        assert decode_rgb(pictures[name]).shape == (3, 600, 400)  # coffee is 600 wide, 400 high before it


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_tensor_transform_matches_timms_pil_transform(pictures, config):
    cfg = CONFIGS[config]
    reference = create_transform(**cfg, is_training=False)
    transform = TensorEvalTransform(cfg, reduced_decoding=False)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    max_levels, mean_levels = (
        (SQUASH_MAX_LEVELS, SQUASH_MEAN_LEVELS) if config == "squash" else (MAX_LEVELS, MEAN_LEVELS)
    )

    for name, path in pictures.items():
        if "large" in name and config not in ("lite0-bicubic", "imagenet-bilinear"):
            continue  # slow, and nothing new for the other configurations
        expected = reference(open_rgb(path))
        got = transform(decode_rgb(path, transform.decode_min_size))

        assert got.dtype == torch.float32 and got.shape == expected.shape, name
        levels = (got - expected).abs() * std * 255  # back to uint8 levels
        assert levels.max() <= max_levels + 1e-3, name
        assert levels.mean() <= mean_levels, name


def test_reduced_decoding_keeps_the_short_side_above_the_resize_target(pictures):
    transform = TensorEvalTransform(LITE0)
    assert transform.decode_min_size == 512  # twice floor(224 / 0.875)
    assert TensorEvalTransform(LITE0, reduced_decoding=False).decode_min_size is None

    assert decode_rgb(pictures["astronaut-large.jpg"], 256).shape == (3, 300, 300)  # 1/4
    assert decode_rgb(pictures["coffee-large.jpg"], 256).shape == (3, 400, 600)  # 1/2
    assert decode_rgb(pictures["chelsea-large-rotated.jpg"], 256).shape == (3, 677, 450)  # 1/2, then rotated
    assert decode_rgb(pictures["astronaut.jpg"], 256).shape == (3, 256, 256)  # 512 = 2 x 256: halved
    assert decode_rgb(pictures["chelsea.jpg"], 256).shape == (3, 300, 451)  # under 2 x 256: full size
    assert decode_rgb(pictures["astronaut-wide.png"], 100).shape == (3, 300, 700)  # PNGs have no reduced decoding


def test_reduced_decoding_stays_within_its_looser_bound(pictures):
    reference = create_transform(**LITE0, is_training=False)
    transform = TensorEvalTransform(LITE0)

    for name in ("astronaut-large.jpg", "coffee-large.jpg", "chelsea-large-rotated.jpg"):
        expected = reference(open_rgb(pictures[name]))
        got = transform(decode_rgb(pictures[name], transform.decode_min_size))
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= DRAFT_MAX, name
        assert (got - expected).abs().mean() <= DRAFT_MEAN, name


def test_unreadable_files_raise_unreadable_image(tmp_path, pictures, decoder):
    corrupt = tmp_path / "x.jpg"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    truncated_jpeg = tmp_path / "cut.jpg"
    truncated_jpeg.write_bytes(pictures["chelsea.jpg"].read_bytes()[:3000])
    truncated_png = tmp_path / "cut.png"
    truncated_png.write_bytes(pictures["chelsea.png"].read_bytes()[:5000])
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")

    for path in (corrupt, truncated_jpeg, truncated_png, text, empty, tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(UnreadableImage, match=path.name):
            decode_rgb(path)
        with pytest.raises(UnreadableImage):
            decode_rgb(path, min_size=16)


def test_decompression_bombs_are_refused_before_decoding(pictures, monkeypatch, decoder):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # PIL refuses over twice this: 300 x 400 is a bomb now
    for name in ("chelsea.jpg", "chelsea.png", "cmyk.jpg", "rotated.jpg"):
        with pytest.raises(UnreadableImage, match="DecompressionBombError"):
            decode_rgb(pictures[name])
        with pytest.raises(UnreadableImage, match="DecompressionBombError"):
            open_rgb(pictures[name])


def test_transform_is_picklable_and_takes_pil_images_too(pictures):
    transform = TensorEvalTransform(LITE0)
    copy = pickle.loads(pickle.dumps(transform))
    tensor = decode_rgb(pictures["chelsea.png"])

    assert torch.equal(copy(tensor), transform(tensor))
    assert torch.equal(transform(open_rgb(pictures["chelsea.png"])), transform(tensor))
    assert transform(tensor).shape == (3, 224, 224)
    with pytest.raises(TypeError):
        transform(tensor.float())


@pytest.mark.parametrize("workers", [0, 1])
def test_image_batches_decode_tensors_for_a_tensor_transform(pictures, tmp_path, workers):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not really a jpeg")
    paths = [pictures["chelsea.jpg"], junk, pictures["cmyk.jpg"], pictures["rgba.png"], pictures["astronaut-large.jpg"]]
    tensor_batches = list(
        image_batches(paths, TensorEvalTransform(LITE0, reduced_decoding=False), batch_size=2, num_workers=workers)
    )
    pil_batches = list(image_batches(paths, create_transform(**LITE0), batch_size=2, num_workers=workers))

    assert [b.indices for b in tensor_batches] == [[0], [2, 3], [4]] == [b.indices for b in pil_batches]
    assert [b.unreadable for b in tensor_batches] == [[1], [], []]
    for tensors, pils in zip(tensor_batches, pil_batches):
        assert (tensors.images - pils.images).abs().max() <= MAX_LEVELS / 255 / 0.5 + 1e-4
