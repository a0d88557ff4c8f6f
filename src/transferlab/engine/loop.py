"""The one loop's parts: a training epoch, ``evaluate``, ``predict`` and ``collect``, for every model transferlab runs.

``Learner.fit`` (``engine/learner.py``) runs the epochs. Fine-tuning, the probe's
torch heads, the from-scratch baseline, feature extraction, the frozen-prefix cache,
predict, evaluate, Grad-CAM and the report's re-scoring all run through here.
Device, precision and memory format come from the ``Runtime``; what a run does
around the epochs (early stopping, checkpoints, progress, logging, EMA) are callbacks.

Over several processes (torchrun) ``Learner.fit`` trains the model under
``DistributedDataParallel``: ``batch_size`` is the global batch, each process
taking ``batch_size / world_size`` rows of it, so an epoch goes through the same
batches of the same permutation as on one process; metrics are summed over the
processes, evaluation shards without padding.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from . import distributed
from .callbacks import Callback
from .runtime import Runtime
from .scoring import correct as count_correct
from .scoring import loss_sum

Forward = Callable[[torch.Tensor], torch.Tensor]
# (the module to call: the model, or its DDP wrapper in training; batch) -> logits: the inputs' own ``forward``
ModuleForward = Callable[[nn.Module, torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
B = TypeVar("B")


@dataclass
class FitState:
    """What callbacks see and may change (``stop``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    stage: str
    epochs: int
    history: list[dict] = field(default_factory=list)
    epoch: int = -1  # the last completed epoch of this fit, 0-based
    stop: bool = False
    callbacks: Sequence[Callback] = ()


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and dropout: fixed by the run's seed, so a resumed run repeats it."""
    return seed * 100_003 + epoch


@contextlib.contextmanager
def epoch_random(seed: int, runtime: Runtime) -> Iterator[None]:
    """The global random state one training epoch draws from, seeded with ``seed`` and the caller's restored after.

    The shuffling has generators of its own (the sampler, the loader's workers), but dropout
    draws from torch's global generator (the CPU's and the runtime's GPU's) and timm's mixup
    from numpy's: both are forked, so ``fit`` leaves its caller's random state as it found it.
    """
    cuda = runtime.device_type == "cuda"
    index = torch.device(runtime.device).index if cuda else None
    devices = [torch.cuda.current_device() if index is None else index] if cuda else []
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for device in devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The head's learning rate and the highest backbone rate, as the history records them."""
    head = [g["lr"] for g in optimizer.param_groups if g.get("name", "head") == "head"]
    backbone = [g["lr"] for g in optimizer.param_groups if g.get("name", "head") != "head"]
    rates = {"lr": head[0] if head else optimizer.param_groups[0]["lr"]}
    if backbone:
        rates["backbone_lr"] = max(backbone)
    return rates


def process_batch_size(batch_size: int, world_size: int) -> int:
    """Each process's share of the global batch; a batch that does not split evenly is refused (the
    processes' gradients are averaged with equal weights)."""
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} is the global batch and does not split evenly over "
                        f"{world_size} processes: use a multiple of {world_size}")
    return batch_size // world_size


def steps_digest(steps_per_rank: list[list[list[int]]]) -> str:
    """Which samples each global step trained on, each counted at its first appearance in the epoch
    (``DistributedSampler`` repeats a few at the end so every process has as many batches)."""
    seen: set[int] = set()
    steps = []
    for k in range(max((len(steps) for steps in steps_per_rank), default=0)):
        ids = {i for steps in steps_per_rank if k < len(steps) for i in steps[k]} - seen
        seen |= ids
        steps.append(sorted(ids))
    return distributed.digest(steps)


def _train_epoch(state: FitState, trained: nn.Module, forward: ModuleForward, loss_fn: LossFn, train,
                 order: list[int], runtime: Runtime, scaler: torch.amp.GradScaler, batch_size: int, seed: int,
                 callbacks: Sequence[Callback], mix: Mix | None, accumulate: int = 1, scoring=None) -> dict[str, Any]:
    """One epoch over ``order``; with ``accumulate`` N the gradients of N batches are summed before each optimizer
    step, each batch's loss weighted by its share of the N batches' rows: one step of an N-times larger batch.
    ``scoring``: how a sample counts as right (``engine.scoring``; None: the arg-max class)."""
    model, optimizer = state.model, state.optimizer
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    steps: list[list[int]] = []
    n_batches = math.ceil(len(order) / batch_size)
    optimizer.zero_grad(set_to_none=True)
    for step, (x, y, index) in enumerate(train.batches(batch_size, order, seed)):
        steps.append(index.tolist())
        x, y = runtime.inputs(x), runtime.targets(y)
        targets = y
        if mix is not None:
            x, targets = mix(x, y)
        group = step // accumulate  # the optimizer step this batch's gradients go into
        last_of_group = (step + 1) % accumulate == 0 or step + 1 == n_batches
        group_rows = min(batch_size * accumulate, len(order) - group * batch_size * accumulate)
        # over several processes the gradients are reduced once, at the group's last batch
        with contextlib.nullcontext() if last_of_group or trained is model else trained.no_sync():
            with runtime.autocast():
                logits = forward(trained, x)
            loss = loss_fn(logits.float(), targets)
            finite = bool(torch.isfinite(loss))
            if runtime.world_size > 1:
                finite = runtime.sum([0.0 if finite else 1.0])[0] == 0  # every process stops together
            if not finite:
                raise UserError(f"the training loss became {float(loss.detach())} in {state.stage} epoch "
                                f"{state.epoch + 2}: lower the learning rate (--lr); no model was saved")
            scaler.scale(loss * (len(y) / group_rows) if accumulate > 1 else loss).backward()
        if last_of_group:
            scaler.step(optimizer)
            scaler.update()
            for callback in callbacks:
                callback.on_step_end(state)  # the gradients of this step are still there
            optimizer.zero_grad(set_to_none=True)
            if state.schedule is not None:
                state.schedule.step()
        total_loss += float(loss.detach()) * len(y)
        correct += count_correct(scoring, logits.detach(), y)
        seen += len(y)
        for callback in callbacks:
            callback.on_batch_end(state, step + 1, n_batches)
    total_loss, correct, seen = runtime.sum([total_loss, correct, seen])
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "samples": steps_digest(runtime.gather(steps))}


def evaluate(model: nn.Module, inputs, runtime: Runtime, batch_size: int,
             forward: ModuleForward | None = None, scoring=None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on labelled ``inputs`` (eval mode, no gradients), each batch
    through ``inputs.forward`` unless ``forward`` is given; ``scoring`` (``engine.scoring``): multi-label's binary
    cross-entropy and subset accuracy instead.

    Over several processes each takes its contiguous slice (no sample dropped or repeated) and the
    sums are added up, so the figures are those of one process.
    """
    forward = forward or inputs.forward
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    try:
        with torch.no_grad():
            for x, y, _ in inputs.batches(batch_size, runtime.shard(len(inputs))):
                x, y = runtime.inputs(x), runtime.targets(y)
                with runtime.autocast():
                    logits = forward(model, x)
                logits = logits.float()
                total_loss += float(loss_sum(scoring, logits, y))
                correct += count_correct(scoring, logits, y)
                seen += len(y)
    finally:
        model.train(was_training)
    total_loss, correct, seen = runtime.sum([total_loss, correct, seen])
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1)}


def predict(model: nn.Module, forward: Forward, batches: Iterable[B], runtime: Runtime,
            inputs_of: Callable[[B], torch.Tensor | None] = lambda batch: batch.images,  # type: ignore[attr-defined]
            ) -> Iterator[tuple[B, torch.Tensor | None]]:
    """``(batch, outputs)`` for each batch, outputs in float32 on the CPU (None for a batch without images).

    Eval mode and no gradients (not inference mode: a frozen prefix's outputs feed training later).
    """
    was_training = model.training
    model.eval()
    forward = runtime.compiled(forward, inference=True)
    try:
        for batch in batches:
            x = inputs_of(batch)
            if x is None:
                yield batch, None
                continue
            with torch.no_grad(), runtime.autocast():
                out = forward(runtime.inputs(x))
            yield batch, out.float().cpu()
    finally:
        model.train(was_training)


def predict_tensor(model: nn.Module, forward: Forward, x: torch.Tensor, runtime: Runtime,
                   batch_size: int = 256) -> torch.Tensor:
    """Outputs for every row of ``x``, in batches."""
    chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    outs = [out for _, out in predict(model, forward, chunks, runtime, inputs_of=lambda chunk: chunk)]
    return torch.cat(outs) if outs else torch.empty(0)


@dataclass
class Collected:
    """What ``collect`` gathered: the outputs of the readable items in order, their indices, the unreadable ones."""

    outputs: torch.Tensor  # (readable items, ...) float32 on the CPU
    indices: list[int]
    unreadable: list[int]


def collect(model: nn.Module, batches: Iterable, runtime: Runtime, forward: Forward | None = None) -> Collected:
    """Every batch of ``batches`` (``data.image_batches``: ``.images``, ``.indices``, ``.unreadable``) through
    ``predict``, the outputs concatenated: the one predict-and-collect loop of test scoring, ``predict``,
    ``evaluate`` and the report's re-scoring."""
    outputs, indices, unreadable = [], [], []
    for batch, out in predict(model, forward or model, batches, runtime):
        unreadable.extend(batch.unreadable)
        if out is None:
            continue
        outputs.append(out)
        indices.extend(int(i) for i in batch.indices)
    return Collected(torch.cat(outputs) if outputs else torch.empty(0), indices, unreadable)
