"""What an epoch iterates over: tensors in memory, cached frozen-prefix outputs, or decoded images.

Every source yields the rows ``order`` lists (the loop draws it from one seeded
permutation), so a run with the frozen-prefix cache sees the same batches as one
without it, and a process of a distributed run its share of them. ``start`` tells
the model where in its forward pass the batches enter (0: images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from ..data.loading import ImageFiles, collate_batch, default_workers


Batches = Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (inputs, labels, row indices)


@dataclass
class TensorInputs:
    """Rows of a tensor with their labels (features, or a frozen prefix's outputs)."""

    values: torch.Tensor
    labels: torch.Tensor
    start: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, order: Sequence[int], seed: int = 0) -> Batches:
        order = torch.tensor(list(order), dtype=torch.long)
        for begin in range(0, len(order), batch_size):
            index = order[begin : begin + batch_size]
            yield self.values[index.to(self.values.device)], self.labels[index], index

    def close(self) -> None:
        self.values = torch.empty(0)


@dataclass
class CachedInputs(TensorInputs):
    """A frozen prefix's outputs; ``release`` frees their backing file when the stage ends."""

    release: Callable[[], None] | None = None

    def close(self) -> None:
        super().close()
        if self.release is not None:
            self.release()


@dataclass
class ImageInputs:
    """Images decoded every epoch (with augmentation, or without a frozen-prefix cache)."""

    paths: list[Path]
    labels: torch.Tensor
    transform: Callable
    num_workers: int | None = None
    pin_memory: bool = False
    start: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int, order: Sequence[int], seed: int = 0) -> Batches:
        """Batches of the images ``order`` lists (unreadable ones dropped); ``seed`` seeds the augmentation."""
        order = list(order)
        if not order:
            return
        workers = default_workers() if self.num_workers is None else self.num_workers
        loader = DataLoader(
            ImageFiles(self.paths, self.transform),
            batch_size=batch_size,
            sampler=order,
            num_workers=workers,
            collate_fn=collate_batch,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(seed),  # seeds the workers' augmentation
        )
        for batch in loader:
            if batch.images is not None:
                index = torch.tensor(batch.indices, dtype=torch.long)
                yield batch.images, self.labels[index], index

    def close(self) -> None:
        pass
