"""The one data path from image files to batches of model inputs.

Decoding and resizing run in DataLoader workers; a file that cannot be decoded is
dropped from its batch and reported, never a crash. Benchmarks time this path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .images import UnreadableImage, open_rgb


class ImageFiles(Dataset):
    """Image files through a transform; an unreadable file yields ``None`` instead of a tensor."""

    def __init__(self, paths: Sequence[Path], transform: Callable):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, self.transform(open_rgb(self.paths[index]))
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
) -> Iterator[Batch]:
    """Decoded, transformed batches of ``paths`` in order."""
    if not paths:
        return iter(())
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_batch,
    )
    return iter(loader)
