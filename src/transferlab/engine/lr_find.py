"""The learning-rate range test (Smith 2015; fastai's ``lr_find``, Lightning's ``Tuner.lr_find``).

Training runs for a few steps with the rate rising exponentially; the loss (smoothed as fastai smooths it) first
falls, then diverges. The suggestion is the rate where it falls fastest (the steepest descent), before its
lowest point. The model's weights are restored afterwards: the sweep only measures.
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
SKIP_START = 5  # the first steps' losses are noise around the starting weights


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
    return LRSweep(lrs, losses, steepest(lrs, losses))


def steepest(lrs: list[float], losses: list[float]) -> float | None:
    """The rate where the loss falls fastest against log(rate), before its lowest point (fastai's ``steep``)."""
    if len(lrs) < SKIP_START + 3:
        return None
    lowest = int(np.argmin(losses))
    span = slice(SKIP_START, max(lowest, SKIP_START + 2) + 1)
    slopes = np.gradient(np.array(losses[span]), np.log(np.array(lrs[span])))
    return float(lrs[span][int(np.argmin(slopes))])
