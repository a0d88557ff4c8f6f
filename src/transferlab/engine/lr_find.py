"""The learning-rate range test (Smith 2015; fastai's ``lr_find``, Lightning's ``Tuner.lr_find``).

Training runs for a few steps with the rate rising exponentially; the loss (smoothed as fastai smooths it) first
falls, then diverges. The suggestion is fastai's ``valley`` (a rate well inside the longest stretch over which it
keeps falling); the steepest descent is given beside it. The model's weights are restored afterwards: the sweep only measures.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .loop import epoch_random, epoch_seed, process_batch_size

if TYPE_CHECKING:
    from .learner import Learner, LRSweep

SMOOTHING = 0.98  # fastai's exponential smoothing of the loss
SKIP_START = 5


def sweep(learner: "Learner", stage: Any, start_lr: float, end_lr: float, steps: int, diverge: float) -> "LRSweep":
    from .learner import LRSweep

    model, runtime, train = learner.model, learner.runtime, learner.train
    saved = copy.deepcopy(model.state_dict())
    optimizer = learner.opt_func(model, stage)
    top = max(g["lr"] for g in optimizer.param_groups)
    shares = [g["lr"] / top for g in optimizer.param_groups]
    batch_size = process_batch_size(learner.batch_size, runtime.world_size)
    seed = getattr(stage, "seed", learner.seed)
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    was_training = model.training
    model.train()
    try:
        with epoch_random(epoch_seed(seed, 0), runtime):
            epoch = 0
            while len(lrs) < steps:
                order = learner.epoch_order(len(train), seed, epoch)
                for x, y, _ in train.batches(batch_size, order, epoch_seed(seed, epoch)):
                    lr = start_lr * (end_lr / start_lr) ** (len(lrs) / max(1, steps - 1))
                    for group, share in zip(optimizer.param_groups, shares):
                        group["lr"] = lr * share
                    x, y = runtime.inputs(x), runtime.targets(y)
                    with runtime.autocast():
                        logits = train.forward(model, x)
                    loss = learner.loss_fn(logits.float(), y)
                    if not torch.isfinite(loss):
                        break
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    average = SMOOTHING * average + (1 - SMOOTHING) * float(loss.detach())
                    smoothed = average / (1 - SMOOTHING ** (len(lrs) + 1))
                    lrs.append(lr)
                    losses.append(smoothed)
                    best = min(best, smoothed)
                    if smoothed > diverge * best or len(lrs) >= steps:
                        break
                else:
                    epoch += 1
                    continue
                break
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    return LRSweep(lrs, losses, valley(lrs, losses), steepest(lrs, losses))


def trimmed(lrs: list[float], losses: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """fastai's window: the first tenth of the sweep (noise around the start) and the last 5 steps (divergence) left
    out."""
    end = len(lrs) - 5 if len(lrs) > SKIP_START + 10 else len(lrs)
    begin = len(lrs) // 10
    return np.array(lrs[begin:end]), np.array(losses[begin:end])


def valley(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's ``valley`` (its default suggestion): the longest stretch over which the loss keeps falling, and a
    rate two-thirds of the way down it (robust to the noise that makes the single steepest point jump)."""
    lr, loss = trimmed(lrs, losses)
    n = len(loss)
    if n < 3:
        return None
    longest = [1] * n
    start, end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if loss[i] < loss[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end, start = i, i - longest[i]
    third = (end - start) / 3
    return float(lr[min(n - 1, start + int(third) + int(third / 2))])


def steepest(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's ``steep``: the rate where the loss falls fastest against log(rate)."""
    lr, loss = trimmed(lrs, losses)
    if len(lr) < 2:
        return None
    slopes = np.diff(loss) / np.diff(np.log(lr))
    return float(lr[int(np.argmin(slopes))])
