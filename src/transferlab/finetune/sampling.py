"""Class-balanced sampling (``--sampler balanced``; fastai's ``WeightedDL``, torch's ``WeightedRandomSampler``).

Each epoch draws as many rows as the training set holds, with replacement, each row with probability inverse to
its class's frequency: every class is seen about equally often. The alternative to ``--class-weights`` (which
reweights the loss instead); the draw is seeded per epoch, so a resumed run repeats it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


def balanced_sampler(labels: Sequence[int], runtime):
    """A ``Learner`` sampler: ``(rows, seed, epoch) -> this process's rows`` drawn class-balanced."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)

    def order(n: int, seed: int, epoch: int) -> list[int]:
        world = runtime.world_size
        drawn = -(-n // world) * world  # every process gets as many rows
        generator = torch.Generator().manual_seed(seed + epoch)
        rows = list(WeightedRandomSampler(weights, drawn, replacement=True, generator=generator))
        return rows[runtime.rank::world]

    return order
