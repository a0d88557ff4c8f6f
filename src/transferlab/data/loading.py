"""The one data path from image files to batches of model inputs.

Decoding and resizing run in DataLoader workers; a file that cannot be decoded is
dropped from its batch and reported, never a crash. Benchmarks time this path.

Two kinds of transform are accepted. One that takes tensors (``tensor_input = True``
or a ``decode_min_size`` attribute, e.g. ``TensorEvalTransform``) gets each file
decoded once into a uint8 3 x H x W tensor by ``decode_rgb`` (libjpeg-turbo, reduced
scale for large JPEGs down to ``decode_min_size``); any other transform (timm's and
torchvision's PIL transforms, training augmentation) gets the PIL image of ``open_rgb``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .decode import decode_rgb
from .images import UnreadableImage, open_rgb
from .memory import MemoryImage, any_in_memory


def takes_tensors(transform: Callable) -> bool:
    """Whether ``transform`` wants uint8 tensors from ``decode_rgb`` rather than PIL images."""
    return bool(getattr(transform, "tensor_input", False)) or hasattr(transform, "decode_min_size")


class ImageFiles(Dataset):
    """Image files (or in-memory images) through a transform; an unreadable file yields ``None`` instead of a tensor."""

    def __init__(self, paths: Sequence[Path | MemoryImage], transform: Callable):
        self.paths = list(paths)
        self.transform = transform
        self.tensor_input = takes_tensors(transform)
        self.decode_min_size = getattr(transform, "decode_min_size", None)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        if isinstance(path, MemoryImage):
            return index, self.transform(path.tensor() if self.tensor_input else path.pil())
        try:
            image = decode_rgb(path, self.decode_min_size) if self.tensor_input else open_rgb(path)
            return index, self.transform(image)
        except UnreadableImage:
            return index, None


@dataclass
class Batch:
    indices: list[int]  # positions in the input sequence of the images in ``images``
    images: torch.Tensor | None  # (B, 3, H, W), None if every file of the batch was unreadable
    unreadable: list[int]  # positions of files that could not be decoded


def collate_batch(items) -> Batch:
    good = [(i, x) for i, x in items if x is not None]
    bad = [i for i, x in items if x is None]
    images = torch.stack([x for _, x in good]) if good else None
    return Batch([i for i, _ in good], images, bad)


def default_workers() -> int:
    """Decoding workers: one per core beyond the first, at most 4 (the model uses the threads too)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def image_batches(
    paths: Sequence[Path],
    transform: Callable,
    batch_size: int = 32,
    num_workers: int | None = None,
    pin_memory: bool = False,
    device: str | None = None,
) -> Iterator[Batch]:
    """Decoded, transformed batches of ``paths`` in order.

    ``pin_memory``: page-locked batches, for a faster, asynchronous copy to a GPU.
    ``device``: a GPU decodes and resizes the batches itself (``device_decode``), for a
    transform that takes tensors; elsewhere the workers do.
    """
    if not paths:
        return iter(())
    workers = default_workers() if num_workers is None else num_workers
    if num_workers is None and len(paths) <= batch_size:
        workers = 0  # one batch: starting a worker process costs more than decoding it here
    if device is not None and not device.startswith("cpu") and takes_tensors(transform) and not any_in_memory(paths):
        from .device_decode import device_batches

        return device_batches(paths, transform, device, batch_size, workers)
    loader = DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_batch,
        pin_memory=pin_memory,
    )
    return iter(loader)
