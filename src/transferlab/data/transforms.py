"""timm's evaluation transform, done on uint8 tensors instead of PIL images.

``TensorEvalTransform(data_config)`` takes what ``decode_rgb`` gives (uint8, 3 x H x W)
and returns what ``timm.data.create_transform(**data_config, is_training=False)``
returns for the same picture as a PIL image: float32, normalised, 3 x h x w. It
follows ``timm.data.transforms_factory.transforms_imagenet_eval`` step by step
(resize rule, crop modes ``center`` / ``squash`` / ``border``, border trimming,
normalisation); the resize is torch's antialiased kernel instead of PIL's, which
differs by rounding only (``tests/test_tensor_transform.py`` bounds it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

# timm's defaults (timm.data.constants), written out so that this module does not import timm.
DEFAULT_CROP_PCT = 0.875
DECODE_MARGIN = 2  # reduced JPEG decoding keeps the short side >= this times the resize target
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

# timm's interpolation names -> the tensor kernel matching PIL's filter. PIL's NEAREST
# is torch's "nearest-exact" (torch's "nearest" picks different pixels).
_TENSOR_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
}
# Filters torch has no kernel for: resized by PIL (a round trip through a PIL image).
_PIL_ONLY_INTERPOLATION = {"box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


class TensorEvalTransform:
    """uint8 3 x H x W RGB tensor -> float32 3 x h x w, as timm's eval transform for ``data_config``.

    ``data_config`` is a backbone's ``data_config`` (timm's ``resolve_data_config``:
    input_size, interpolation, mean, std, crop_pct, crop_mode; crop_border_pixels is
    honoured too). ``decode_min_size`` tells the data loader how small a JPEG may be
    decoded (``decode_rgb(path, min_size)``) so that the resize still only shrinks it;
    ``reduced_decoding=False`` turns that off (None) for an exact full-size decode.
    A PIL image is accepted too (converted to RGB first). Picklable, for DataLoader workers.
    """

    tensor_input = True  # image_batches decodes files with decode_rgb for this transform

    def __init__(self, data_config: Mapping[str, Any], reduced_decoding: bool = True):
        input_size = data_config.get("input_size", 224)
        if isinstance(input_size, (tuple, list)):
            self.img_size = (int(input_size[-2]), int(input_size[-1]))
        else:
            self.img_size = (int(input_size), int(input_size))
        crop_pct = data_config.get("crop_pct") or DEFAULT_CROP_PCT
        self.scale_size = tuple(math.floor(x / crop_pct) for x in self.img_size)
        crop_mode = data_config.get("crop_mode") or "center"
        self.crop_mode = crop_mode if crop_mode in ("squash", "border") else "center"  # timm: anything else is center
        self.interpolation = str(data_config.get("interpolation") or "bilinear")
        if self.interpolation not in _TENSOR_INTERPOLATION and self.interpolation not in _PIL_ONLY_INTERPOLATION:
            raise ValueError(f"unknown interpolation {self.interpolation!r} for an evaluation transform")
        self.mean = tuple(float(v) for v in data_config.get("mean", IMAGENET_DEFAULT_MEAN))
        self.std = tuple(float(v) for v in data_config.get("std", IMAGENET_DEFAULT_STD))
        self.crop_border_pixels = int(data_config.get("crop_border_pixels") or 0)
        # A JPEG is decoded no smaller than twice the resize target on its short side (the
        # largest target side: conservative for non-square targets and the border mode).
        # With a 2x margin Lite0's features keep cosine similarity >= 0.993 with the
        # full-size decode (mean 0.999); at 1x the worst image fell to 0.977.
        # Border trimming counts original pixels, so it rules reduced decoding out.
        reduce = reduced_decoding and not self.crop_border_pixels
        self.decode_min_size: int | None = DECODE_MARGIN * max(self.scale_size) if reduce else None

    def __call__(self, image: torch.Tensor | Image.Image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            image = F.pil_to_tensor(image.convert("RGB"))
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise TypeError(f"expected a uint8 3 x H x W RGB tensor, got {image.dtype} {tuple(image.shape)}")
        if self.crop_border_pixels:
            image = self._trim_border(image)
        height, width = image.shape[-2:]
        if self.crop_mode == "squash":
            image = self._resize(image, self.scale_size)
            image = F.center_crop(image, list(self.img_size))
        elif self.crop_mode == "border":
            image = self._resize(image, _keep_ratio_size(height, width, self.scale_size, longest=1.0))
            image = self._center_crop_or_pad(image)
        else:
            if self.scale_size[0] == self.scale_size[1]:
                # torchvision's Resize(int) rule: short side -> s, long side -> int(s * long / short)
                short, long = sorted((height, width))
                new_short, new_long = self.scale_size[0], int(self.scale_size[0] * long / short)
                size = (new_short, new_long) if height <= width else (new_long, new_short)
            else:
                size = _keep_ratio_size(height, width, self.scale_size, longest=0.0)
            image = self._resize(image, size)
            image = F.center_crop(image, list(self.img_size))
        image = F.to_dtype(image, torch.float32, scale=True)  # / 255
        return F.normalize(image, list(self.mean), list(self.std)).contiguous()

    def _resize(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(image.shape[-2:]) == tuple(size):
            return image  # as torchvision: no resampling at the same size
        if self.interpolation in _PIL_ONLY_INTERPOLATION:
            picture = F.to_pil_image(image).resize((size[1], size[0]), _PIL_ONLY_INTERPOLATION[self.interpolation])
            return F.pil_to_tensor(picture)
        return F.resize(image, list(size), interpolation=_TENSOR_INTERPOLATION[self.interpolation], antialias=True)

    def _trim_border(self, image: torch.Tensor) -> torch.Tensor:
        # timm's TrimBorder, including its clamping of both offsets by the height
        height, width = image.shape[-2:]
        border = self.crop_border_pixels
        top = left = min(border, height)
        return F.crop(image, top, left, max(0, height - 2 * border), max(0, width - 2 * border))

    def _center_crop_or_pad(self, image: torch.Tensor) -> torch.Tensor:
        # timm's center_crop_or_pad: pad the short dimension(s) with the mean colour, then crop
        crop_height, crop_width = self.img_size
        height, width = image.shape[-2:]
        if crop_width > width or crop_height > height:
            padding = [
                (crop_width - width) // 2 if crop_width > width else 0,
                (crop_height - height) // 2 if crop_height > height else 0,
                (crop_width - width + 1) // 2 if crop_width > width else 0,
                (crop_height - height + 1) // 2 if crop_height > height else 0,
            ]
            image = F.pad(image, padding, fill=[round(255 * v) for v in self.mean])
        return F.center_crop(image, [crop_height, crop_width])

    def __repr__(self) -> str:
        return (
            f"TensorEvalTransform(img_size={self.img_size}, scale_size={self.scale_size}, "
            f"crop_mode={self.crop_mode!r}, interpolation={self.interpolation!r}, mean={self.mean}, "
            f"std={self.std}, crop_border_pixels={self.crop_border_pixels}, decode_min_size={self.decode_min_size})"
        )


def _keep_ratio_size(height: int, width: int, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm's ResizeKeepRatio size (no random scale or aspect)."""
    ratio_h, ratio_w = height / target[0], width / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(height / ratio), round(width / ratio)
