"""Images held in memory: the records of a dataset file (CIFAR's binary batches) rather than files of their own.

A dataset's samples are either image files (``Path``) or ``MemoryImage`` records; the
data path (``loading.ImageFiles``) and the feature cache take both. A record keys
the cache by the digest of its raw pixel bytes, as a file does by its content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class MemoryImage:
    """One 8-bit RGB picture stored channel-planar (all red, then green, then blue: CIFAR's layout)."""

    source: Path  # the dataset file it was read from
    index: int  # its record number in that file
    height: int
    width: int
    pixels: bytes = field(repr=False, compare=False)  # 3 * height * width bytes

    def __post_init__(self) -> None:
        if len(self.pixels) != 3 * self.height * self.width:
            raise ValueError(f"{self}: {len(self.pixels)} bytes for a 3 x {self.height} x {self.width} image")

    def __str__(self) -> str:
        return f"{self.source}#{self.index}"

    @property
    def name(self) -> str:
        return f"{self.source.name}#{self.index}"

    def tensor(self) -> torch.Tensor:
        """3 x H x W uint8, as ``decode_rgb`` gives for a file."""
        return torch.frombuffer(bytearray(self.pixels), dtype=torch.uint8).view(3, self.height, self.width)

    def pil(self) -> Image.Image:
        """An RGB PIL image, as ``open_rgb`` gives for a file."""
        array = np.frombuffer(self.pixels, dtype=np.uint8).reshape(3, self.height, self.width)
        return Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), mode="RGB")

    def digest(self) -> str:
        """SHA-256 of the shape and the raw pixel bytes: the picture's content, wherever it is stored."""
        digest = hashlib.sha256(f"rgb-planar:{self.height}x{self.width}:".encode())
        digest.update(self.pixels)
        return digest.hexdigest()


def content_digest(item) -> str:
    """The content digest that keys an image's cached features (OSError for a file that cannot be read): a file's
    or a packed image's encoded bytes (the same for the same picture, wherever it is stored), a record's pixels."""
    from .packed import PackedImage

    if isinstance(item, (MemoryImage, PackedImage)):
        return item.digest()
    from ..storage import file_digest

    return file_digest(item)


def any_in_memory(items) -> bool:
    return any(isinstance(item, MemoryImage) for item in items)
