"""Frozen-prefix cache: the frozen units' output, computed once instead of every epoch.

When the frozen units form a prefix of the network and no augmentation is
applied, what they produce for an image is the same every epoch. Computing it
once (decoding included) and training only the rest gives the same results as
recomputing, at a fraction of the cost. With nothing frozen (or a model without a
path) it still saves the decoding: the cached "prefix" is the preprocessed image.

Outputs live in memory, or in a memory-mapped file under the cache folder when
they would not fit comfortably.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import image_batches
from ..engine.loop import predict
from ..engine.runtime import Runtime
from ..storage import cache_root
from ..timing import Phases
from .model import TransferModel

MEMORY_LIMIT_BYTES = 4 * 1024**3

log = logging.getLogger(__name__)


@dataclass
class PrefixOutputs:
    """The prefix's output for every readable image of a split, row-aligned with ``kept``."""

    values: torch.Tensor
    kept: list[int]
    unreadable: list[int]
    backing: Path | None = field(default=None, repr=False)

    def release(self) -> None:
        self.values = torch.empty(0)
        if self.backing is not None:
            self.backing.unlink(missing_ok=True)


def compute_prefix_outputs(model: TransferModel, steps: int, paths: list[Path], transform: Callable, runtime: Runtime,
                           batch_size: int = 32, num_workers: int | None = None,
                           progress: Callable[[int, int], None] | None = None,
                           phases: Phases | None = None) -> PrefixOutputs:
    """Run images through the model's first ``steps`` path steps once (eval mode, no gradients).

    Over several processes each computes its own slice of ``paths``; the slices are then gathered, so
    every process holds every image's outputs (training shuffles all of them over the processes).
    ``phases``: the time spent waiting for decoded images is added to its ``train_decode``.
    """
    if runtime.world_size == 1:
        return _prefix_outputs(model, steps, paths, transform, runtime, batch_size, num_workers, progress, phases)
    mine = runtime.shard(len(paths))
    local = _prefix_outputs(model, steps, paths[mine.start : mine.stop], transform, runtime, batch_size,
                            num_workers, progress, phases)
    parts = runtime.gather((tuple(local.values.shape[1:]) if local.kept else None,
                            [mine.start + i for i in local.kept], [mine.start + i for i in local.unreadable]))
    shape = next((part[0] for part in parts if part[0] is not None), None)
    values = torch.empty(0)
    if shape is not None:  # some process read an image
        rows = local.values if local.kept else torch.empty((0, *shape))
        values = runtime.gather_rows(rows.to(runtime.device))
    local.release()
    return PrefixOutputs(values, [i for part in parts for i in part[1]], [i for part in parts for i in part[2]])


def _prefix_outputs(model: TransferModel, steps: int, paths: list[Path], transform: Callable, runtime: Runtime,
                    batch_size: int, num_workers: int | None,
                    progress: Callable[[int, int], None] | None, phases: Phases | None = None) -> PrefixOutputs:
    store: torch.Tensor | None = None
    backing: Path | None = None
    kept: list[int] = []
    unreadable: list[int] = []
    row = done = 0
    batches = image_batches(paths, transform, batch_size, num_workers, runtime.pin_memory, runtime.device)
    if phases is not None:
        batches = phases.waiting(batches, "train_decode")
    for batch, out in predict(model, lambda x: model.prefix(x, steps), batches, runtime):
        unreadable.extend(batch.unreadable)
        if out is not None:
            if store is None:
                store, backing = _allocate(len(paths), tuple(out.shape[1:]))
            store[row : row + len(out)] = out
            row += len(out)
            kept.extend(batch.indices)
        done += len(batch.indices) + len(batch.unreadable)
        if progress:
            progress(done, len(paths))
    values = store[:row] if store is not None else torch.empty(0)
    if runtime.device_type != "cpu" and backing is None:
        values = values.to(runtime.device)  # fits in memory: keep it where training runs
    return PrefixOutputs(values, kept, unreadable, backing)


def _allocate(n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, Path | None]:
    nbytes = n * int(np.prod(shape)) * 4
    if nbytes <= MEMORY_LIMIT_BYTES:
        return torch.empty((n, *shape), dtype=torch.float32), None
    folder = cache_root() / "prefix"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, suffix=".f32")
        os.close(fd)
    except OSError as exc:  # an unwritable cache: keep the outputs in memory instead
        log.warning("cannot write the prefix cache in %s (%s); keeping it in memory", folder, exc.strerror or exc)
        return torch.empty((n, *shape), dtype=torch.float32), None
    array = np.lib.format.open_memmap(name, mode="w+", dtype=np.float32, shape=(n, *shape))
    return torch.from_numpy(array), Path(name)
