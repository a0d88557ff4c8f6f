"""Open any image file as an upright 8-bit RGB picture, or say it is unreadable."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .packed import openable

# What PIL raises for files that are not images, truncated or otherwise broken.
# ``Image.open`` itself refuses decompression bombs (DecompressionBombError above
# twice ``Image.MAX_IMAGE_PIXELS``) from the header, before anything is decoded.
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


# PIL's names for JPEG files: MPO is the multi-picture JPEG many cameras write (the first picture is the photo).
JPEG_FORMATS = ("JPEG", "MPO")


class UnreadableImage(Exception):
    """The file is not an image PIL can decode."""


def open_rgb(path: Path | str, min_size: int | None = None) -> Image.Image:
    """Decode ``path`` to RGB: EXIF orientation applied, alpha composited on white, 16-bit rescaled.

    With ``min_size``, a JPEG whose short side is at least twice ``min_size`` is decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), its short side staying >= ``min_size``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency, EXIF and bomb warnings are not the user's problem
            with Image.open(openable(path)) as image:
                return decode_opened(image, min_size)
    except UNREADABLE_ERRORS as exc:
        raise UnreadableImage(f"{path}: {exc.__class__.__name__}") from None


def decode_opened(image: Image.Image, min_size: int | None = None) -> Image.Image:
    """Decode a lazily opened ``image`` to upright RGB (PIL's errors propagate)."""
    if min_size:
        reduce_jpeg_decoding(image, min_size)
    image.load()
    return to_rgb(ImageOps.exif_transpose(image))


def reduce_jpeg_decoding(image: Image.Image, min_size: int) -> bool:
    """Ask libjpeg for a 1/2, 1/4 or 1/8 scale decode keeping the short side >= ``min_size``.

    Only for a not-yet-loaded JPEG at least twice ``min_size`` on its short side; the
    orientation does not matter (the requested box is square). True if it will be reduced.
    """
    if not reducible(image, min_size):
        return False
    # draft() picks the largest scale s in (8, 4, 2) with size // s >= the box in both
    # directions; the mode stays as it is (no YCbCr -> L shortcut).
    return image.draft(image.mode, (min_size, min_size)) is not None


def reducible(image: Image.Image, min_size: int | None) -> bool:
    """Whether a reduced-scale decode keeping the short side >= ``min_size`` saves at least 2x."""
    return bool(min_size) and image.format in JPEG_FORMATS and min(image.size) >= 2 * min_size


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max()
        scaled = values * (255.0 / top) if top > 0 else values
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
