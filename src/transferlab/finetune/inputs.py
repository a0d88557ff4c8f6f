"""What a training epoch iterates over: cached frozen-prefix outputs, or decoded images.

Both sources shuffle with the same seeded permutation, so a run with the
frozen-prefix cache sees the same batches as one without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader

from ..data.loading import ImageFiles, collate_batch, default_workers
from .prefix_cache import PrefixOutputs


def epoch_order(n: int, seed: int, shuffle: bool) -> list[int]:
    if not shuffle:
        return list(range(n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


@dataclass
class CachedInputs:
    """Prefix outputs held in memory; batches start at layer ``start``."""

    outputs: PrefixOutputs
    labels: torch.Tensor  # labels of the kept rows
    start: int

    def __len__(self) -> int:
        return len(self.outputs)

    def batches(self, batch_size: int, seed: int, shuffle: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(len(self), seed, shuffle)
        for begin in range(0, len(order), batch_size):
            index = torch.tensor(order[begin : begin + batch_size])
            yield self.outputs.values[index], self.labels[index]

    def close(self) -> None:
        self.outputs.close()


@dataclass
class ImageInputs:
    """Images decoded every epoch (needed with augmentation or without a frozen prefix cache)."""

    paths: list[Path]
    labels: torch.Tensor
    transform: Callable
    num_workers: int | None = None
    start: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int, seed: int, shuffle: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(len(self), seed, shuffle)
        workers = default_workers() if self.num_workers is None else self.num_workers
        loader = DataLoader(
            ImageFiles(self.paths, self.transform),
            batch_size=batch_size,
            sampler=order,
            num_workers=workers,
            collate_fn=collate_batch,
            generator=torch.Generator().manual_seed(seed),  # seeds the workers' augmentation
        )
        for batch in loader:
            if batch.images is not None:
                yield batch.images, self.labels[torch.tensor(batch.indices)]

    def close(self) -> None:
        pass
