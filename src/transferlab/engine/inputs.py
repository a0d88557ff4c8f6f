"""What an epoch iterates over: tensors in memory, cached frozen-prefix outputs, images decoded once and
augmented every epoch, or images decoded every epoch.

Every source yields the rows ``order`` lists (the loop draws it from one seeded
permutation), so a run with the frozen-prefix cache sees the same batches as one
without it, and a process of a distributed run its share of them. A source knows
where in the model's forward pass its batches enter (``start``, 0: images) and
calls the model accordingly (``forward``): the loop never needs to know.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.loading import ImageFiles, collate_batch, default_workers


Batches = Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (inputs, labels, row indices)


class EntersModel:
    """Mixin: a source whose batches enter the model at ``start`` (0: images; more: a cached frozen prefix's
    outputs, which a ``TransferModel`` takes as ``model(x, start=start)``)."""

    start: int = 0

    def forward(self, module, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of this source through ``module`` (the model, or its DDP wrapper)."""
        return module(x) if self.start == 0 else module(x, start=self.start)


@dataclass
class TensorInputs(EntersModel):
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


def loaded_batches(dataset, labels: torch.Tensor, batch_size: int, order: Sequence[int], num_workers: int | None,
                   pin_memory: bool, seed: int) -> Batches:
    """Batches of ``dataset`` (items ``(index, image or None)``) in ``order``, through DataLoader workers; images
    that could not be read are dropped. ``seed`` seeds the workers' random augmentation."""
    order = list(order)
    if not order:
        return
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=workers, collate_fn=collate_batch,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    yield from labelled(loader, labels)


def labelled(loader: DataLoader, labels: torch.Tensor) -> Batches:
    """(images, labels, indices) of each batch ``loader`` collates, batches with no readable image skipped."""
    for batch in loader:
        if batch.images is not None:
            index = torch.tensor(batch.indices, dtype=torch.long)
            yield batch.images, labels[index], index


@dataclass
class ImageInputs(EntersModel):
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
        return loaded_batches(ImageFiles(self.paths, self.transform), self.labels, batch_size, order,
                              self.num_workers, self.pin_memory, seed)

    def close(self) -> None:
        pass


KEPT_SHARE_CPU = 0.25  # of the memory available now: the most that kept training images may take
KEPT_SHARE_GPU = 0.5  # of the device's free memory


def kept_image_bytes(short_side: int) -> int:
    """Bytes of one kept uint8 image whose short side is ``short_side`` (4:3, the common photo shape)."""
    return 3 * short_side * (short_side * 4 // 3)


def memory_budget(device: str) -> int:
    """Bytes that images kept for a whole run may take on ``device``."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * KEPT_SHARE_GPU)
    if not device.startswith("cpu"):
        return 0  # MPS shares the system's memory: keep them on the CPU
    return int(available_memory() * KEPT_SHARE_CPU)


def available_memory() -> int:
    """Memory the system can give without swapping (Linux's MemAvailable; free pages elsewhere)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


class _KeptImages(Dataset):
    """Images decoded once (uint8 tensors; None where a file was unreadable) through a random transform.

    An item is asked for by ``(index, seed)``: its augmentation draws from generators seeded by the pair alone, so
    an image is augmented alike whichever worker (or the main process) transforms it, and persistent workers
    need no reseeding between epochs. The caller's random state is left as it was."""

    def __init__(self, images: list[torch.Tensor | None], transform: Callable):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        image = self.images[index]
        if image is None:
            return index, None
        with _seeded(seed * 1_000_003 + index):
            return index, self.transform(image)


@contextmanager
def _seeded(seed: int):
    """torch's, numpy's and Python's global generators seeded with ``seed`` (the transforms draw from all three:
    timm's RandAugment uses ``random`` and numpy), restored afterwards."""
    python, legacy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(legacy)


class _EpochKeys(Sampler):
    """``(row, seed)`` keys of one epoch's rows, in order; the main process sets them before each epoch (the
    sampler is iterated there, so persistent workers see each epoch's keys)."""

    def __init__(self) -> None:
        self.order: list[int] = []
        self.seed = 0

    def __iter__(self):
        return ((row, self.seed) for row in self.order)

    def __len__(self) -> int:
        return len(self.order)


@dataclass
class DecodedInputs(EntersModel):
    """Training images decoded once, kept as uint8 tensors (``keep``: e.g. resized to the evaluation resize), and
    augmented by ``transform`` every epoch: with augmentation no epoch decodes a JPEG again.

    On a GPU the kept images live on the device and are augmented there (one process, no workers); on a CPU
    DataLoader workers augment them, reading the one copy the forked workers share.
    """

    images: list[torch.Tensor | None]
    labels: torch.Tensor
    transform: Callable
    num_workers: int | None = None
    pin_memory: bool = False
    start: int = 0
    _loader: DataLoader | None = field(default=None, init=False, repr=False)
    _keys: _EpochKeys = field(default_factory=_EpochKeys, init=False, repr=False)

    @classmethod
    def decode(cls, paths: Sequence[Path], labels: torch.Tensor, keep: Callable, transform: Callable,
               num_workers: int | None = None, pin_memory: bool = False, device: str = "cpu") -> "DecodedInputs":
        """Decode every file once through ``keep`` (in workers), onto ``device``."""
        images: list[torch.Tensor | None] = [None] * len(paths)
        workers = default_workers() if num_workers is None else num_workers
        loader = DataLoader(ImageFiles(paths, keep), batch_size=16, num_workers=workers, collate_fn=list)
        on_device = not device.startswith("cpu")
        for items in loader:
            for index, image in items:
                # clone: a worker's tensor arrives in shared memory, one open file per image if kept as it is
                images[index] = None if image is None else (image.to(device) if on_device else image.clone())
        return cls(images, labels, transform, 0 if on_device else num_workers, pin_memory and not on_device)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, order: Sequence[int], seed: int = 0) -> Batches:
        """Batches of the kept images ``order`` lists (unreadable ones dropped); ``seed`` seeds the augmentation.

        The workers persist from epoch to epoch: forked afresh every epoch, each fork made the training process
        copy every page it wrote afterwards again (on 2 cores, 100 s of system time in a 15-epoch fine-tune)."""
        self._keys.order, self._keys.seed = list(order), seed
        if not self._keys.order:
            return
        if self._loader is None or self._loader.batch_size != batch_size:
            self.shutdown()
            workers = default_workers() if self.num_workers is None else self.num_workers
            self._loader = DataLoader(_KeptImages(self.images, self.transform), batch_size=batch_size,
                                      sampler=self._keys, num_workers=workers, collate_fn=collate_batch,
                                      pin_memory=self.pin_memory, persistent_workers=workers > 0,
                                      generator=torch.Generator().manual_seed(0))  # leaves the global one alone
        yield from labelled(self._loader, self.labels)

    def shutdown(self) -> None:
        """Stop the persistent workers (they hold a fork of the process)."""
        self._loader = None  # its iterator's finaliser stops the workers

    def close(self) -> None:
        pass  # kept for the run's next stage; freed with the run (``shutdown`` then)
