"""Frozen-prefix cache: the frozen layers' output, computed once instead of every epoch.

When the frozen layers form a prefix of the network and no augmentation is
applied, what they produce for an image is the same every epoch. Computing it
once (decoding included) and training only the tail gives the same results as
recomputing, at a fraction of the cost. With no frozen layers it still saves the
decoding: the cached "prefix" is then the preprocessed image itself.

Outputs live in memory, or in a memory-mapped file under the cache folder when
they would not fit comfortably.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backbones import to_channels_last
from ..data import image_batches
from ..storage import cache_root

MEMORY_LIMIT_BYTES = 4 * 1024**3


class PrefixOutputs:
    """The frozen prefix's output for every readable image of a split, row-aligned with ``kept``."""

    def __init__(self, values: torch.Tensor, kept: list[int], unreadable: list[int], backing: Path | None = None):
        self.values = values
        self.kept = kept
        self.unreadable = unreadable
        self._backing = backing

    def __len__(self) -> int:
        return len(self.kept)

    def close(self) -> None:
        self.values = torch.empty(0)
        if self._backing is not None:
            self._backing.unlink(missing_ok=True)


@torch.no_grad()
def compute_prefix_outputs(
    model,
    stop: int,
    paths: list[Path],
    transform: Callable,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrefixOutputs:
    """Run images through layers ``0 .. stop - 1`` once (no_grad, not inference_mode: the outputs feed training)."""
    was_training = model.training
    model.eval()
    store: torch.Tensor | None = None
    backing: Path | None = None
    kept: list[int] = []
    unreadable: list[int] = []
    row = 0
    done = 0
    for batch in image_batches(paths, transform, batch_size, num_workers):
        unreadable.extend(batch.unreadable)
        if batch.images is not None:
            out = model.features(to_channels_last(batch.images), 0, stop)
            if store is None:
                store, backing = _allocate(len(paths), tuple(out.shape[1:]))
            store[row : row + len(out)] = out
            row += len(out)
            kept.extend(batch.indices)
        done += len(batch.indices) + len(batch.unreadable)
        if progress:
            progress(done, len(paths))
    model.train(was_training)
    values = store[:row] if store is not None else torch.empty(0)
    return PrefixOutputs(values, kept, unreadable, backing)


def _allocate(n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, Path | None]:
    nbytes = n * int(np.prod(shape)) * 4
    if nbytes <= MEMORY_LIMIT_BYTES:
        return torch.empty((n, *shape), dtype=torch.float32), None
    folder = cache_root() / "prefix"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, suffix=".f32")
    os.close(fd)
    array = np.lib.format.open_memmap(name, mode="w+", dtype=np.float32, shape=(n, *shape))
    return torch.from_numpy(array), Path(name)
