"""Decode image files straight to uint8 tensors, with a libjpeg-turbo / libpng decoder.

``decode_rgb`` gives the same picture as ``open_rgb`` (upright RGB, 8 bits) as a
3 x H x W uint8 tensor. Plain 8-bit RGB or greyscale JPEGs and PNGs, nearly every
photo, go through TorchCodec's decoders when TorchCodec is installed, otherwise
through ``torchvision.io``; every other file and mode (CMYK JPEG, 16-bit, palette,
alpha, GIF, WebP, TIFF...) and anything the fast decoder rejects goes through
``open_rgb``'s PIL path, so a file is readable here exactly when PIL can read it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .packed import PackedImage, encoded_bytes
from .images import JPEG_FORMATS, UNREADABLE_ERRORS, UnreadableImage, decode_opened, reducible

# (kind, encoded bytes) -> 3 x H x W tensor with EXIF orientation applied; kind is "jpeg" or "png"
FastDecoder = Callable[[str, torch.Tensor], torch.Tensor]

# torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still work and we
# use them only where TorchCodec is not installed, so that one warning is silenced (per call).
_TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


def decode_rgb(path: Path | str | PackedImage, min_size: int | None = None) -> torch.Tensor:
    """``path`` as an upright RGB uint8 tensor (3 x H x W), or ``UnreadableImage``.

    With ``min_size``, a JPEG whose short side is at least twice ``min_size`` is decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling through PIL's ``draft``), keeping its
    short side >= ``min_size``: a later resize to ``min_size`` still only shrinks it.
    The result may be a channels-last view (strides of an H x W x 3 array).
    """
    try:
        data = bytearray(encoded_bytes(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as open_rgb: the bomb warning below PIL's hard limit
            # The header only: Image.open applies PIL's decompression-bomb limit before any decoding.
            image = Image.open(io.BytesIO(data))
        with image:
            fast = _decode_fast(image, data, min_size)
            if fast is not None:
                return fast
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # as open_rgb: palette-transparency and EXIF warnings
                return pil_to_tensor(decode_opened(image, min_size))
    except UNREADABLE_ERRORS as exc:
        raise UnreadableImage(f"{path}: {exc.__class__.__name__}") from None


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a 3 x H x W uint8 tensor (a channels-last view of a copy)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def fast_decoder_name() -> str:
    """Which decoder ``decode_rgb`` uses for plain JPEGs and PNGs: torchcodec, torchvision or pil."""
    return _fast_decoder()[0]


def _decode_fast(image: Image.Image, data: bytearray, min_size: int | None) -> torch.Tensor | None:
    """The fast decoder's tensor for a plain 8-bit RGB/grey JPEG or PNG; None: use PIL."""
    decoder = _fast_decoder()[1]
    if decoder is None or image.mode not in ("RGB", "L"):
        return None
    if image.format in JPEG_FORMATS:
        if reducible(image, min_size):
            return None  # PIL's draft decodes it at reduced scale, a bigger saving
        kind = "jpeg"
    elif image.format == "PNG" and "transparency" not in image.info:
        kind = "png"
    else:
        return None
    try:
        tensor = decoder(kind, torch.frombuffer(data, dtype=torch.uint8))
    except (RuntimeError, ValueError):
        return None  # truncated, corrupt or unusual: PIL decodes it or says why not
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[0] != 3:
        return None  # e.g. a 16-bit RGB PNG: PIL's 8-bit reduction, as open_rgb does
    return tensor


FAST_DECODERS = ("torchcodec", "torchvision")  # in order of preference


@cache
def _fast_decoder() -> tuple[str, FastDecoder | None]:
    for name in FAST_DECODERS:
        decoder = load_fast_decoder(name)
        if decoder is not None:
            return name, decoder
    return "pil", None  # neither installed, or a torchvision that no longer decodes: PIL does it all


def load_fast_decoder(name: str) -> FastDecoder | None:
    """The ``name`` decoder ("torchcodec" or "torchvision"), None where it is not available."""
    if name == "torchcodec":
        try:
            from torchcodec.decoders import decode_jpeg as tc_jpeg
            from torchcodec.decoders import decode_png as tc_png
        except Exception:  # not installed, or its native libraries do not load here
            return None

        def torchcodec_decode(kind: str, data: torch.Tensor) -> torch.Tensor:
            # TorchCodec always applies the EXIF orientation; "auto" keeps 16-bit PNGs 16-bit.
            if kind == "jpeg":
                return tc_jpeg(data, mode="RGB")
            return tc_png(data, mode="RGB", output_dtype="auto")

        return torchcodec_decode
    if name == "torchvision":
        try:
            from torchvision.io import ImageReadMode
            from torchvision.io import decode_jpeg as tv_jpeg
            from torchvision.io import decode_png as tv_png
        except Exception:
            return None

        def torchvision_decode(kind: str, data: torch.Tensor) -> torch.Tensor:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_TORCHVISION_DEPRECATION, category=DeprecationWarning)
                decode = tv_jpeg if kind == "jpeg" else tv_png
                return decode(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)

        return torchvision_decode
    raise ValueError(f"unknown decoder {name!r}: one of {', '.join(FAST_DECODERS)}")
