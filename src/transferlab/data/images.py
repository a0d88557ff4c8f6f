"""Open any image file as an upright 8-bit RGB picture, or say it is unreadable."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# What PIL raises for files that are not images, truncated or otherwise broken.
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


class UnreadableImage(Exception):
    """The file is not an image PIL can decode."""


def open_rgb(path: Path | str) -> Image.Image:
    """Decode ``path`` to RGB: EXIF orientation applied, alpha composited on white, 16-bit rescaled."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency and EXIF warnings are not the user's problem
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except UNREADABLE_ERRORS as exc:
        raise UnreadableImage(f"{path}: {exc.__class__.__name__}") from None


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
