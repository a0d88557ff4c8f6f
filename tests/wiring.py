"""What the engine's loop received, recorded while a real ``finetune``/``probe`` runs: for the wiring tests.

``Recorder`` wraps the loop's per-epoch training step (``engine.loop._train_epoch``) and its
validation (``engine.loop.evaluate``) so that every optimizer step records the batch the
model saw (after mixup/cutmix), the labels before mixing, the targets and loss the loss
function got, the optimizer's param groups and rates, whether BatchNorm layers were
updating, and the callbacks the loop was given; and every validation pass the images it
evaluated. It only observes: the real loop runs unchanged. ``ProbeRecorder`` records the
probe's extraction (paths, features, input batches) and the fitted scikit-learn pipelines.

``wires(...)`` marks a test as the one that checks options' wiring; ``test_wiring_identity``
fails when a field of an option record has no such test.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from helpers import make_class_folders

WIRED: dict[str, list[str]] = {}  # "FinetuneConfig.layer_decay" -> ["module::test", ...]


def wires(*keys: str) -> Callable:
    """Register the decorated test as the wiring test of ``Record.field`` for each key."""
    def mark(test: Callable) -> Callable:
        for key in keys:
            WIRED.setdefault(key, []).append(f"{test.__module__}::{test.__name__}")
        return test
    return mark


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these runs are tiny, and on a busy machine OpenMP threads spinning against each other
    made a one-second run take twenty."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().float().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


@dataclass
class Step:
    """One optimizer step as the loop ran it."""

    stage: str
    epoch: int  # 0-based, counted per stage
    inputs: torch.Tensor  # what the model was given (after mixing), as given
    start: int  # where the inputs enter the model (0: images)
    logits: torch.Tensor
    groups: list[dict]  # name, lr, weight_decay, shapes of the params
    optimizer: str
    bn_training: list[bool]  # each BatchNorm layer's mode during the step
    model: nn.Module
    raw: torch.Tensor | None = None  # the batch before mixup/cutmix (only when the loop mixes)
    labels: torch.Tensor | None = None  # the labels before mixing (only when the loop mixes)
    targets: torch.Tensor | None = None  # what the loss function got
    loss: float | None = None


@dataclass
class Epoch:
    """One call of the training epoch: what the loop was given for it."""

    stage: str
    epochs: int
    batch_size: int
    train: Any  # the training inputs source (images, decoded images, cached prefix outputs)
    callbacks: list
    runtime: Any
    forward: Callable
    steps: list[Step] = field(default_factory=list)


@dataclass
class Evaluation:
    stage: str
    inputs: list[torch.Tensor]
    start: int


@dataclass
class Recorded:
    """What the loop was given and did during one run."""

    epochs: list[Epoch] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def steps(self) -> list[Step]:
        return [s for e in self.epochs for s in e.steps]

    def stage_steps(self, stage: str) -> list[Step]:
        return [s for s in self.steps if s.stage == stage]

    def stage_epochs(self, stage: str) -> list[Epoch]:
        return [e for e in self.epochs if e.stage == stage]


def rates(step: Step) -> dict[str, float]:
    """{group name: lr} (a unit's two groups, with and without weight decay, share one rate)."""
    return {g["name"]: g["lr"] for g in step.groups}


class Recorder:
    """Records every fit's epochs, steps and validations until ``take()`` hands them over."""

    def __init__(self, monkeypatch):
        from transferlab.engine import loop

        self.seen = Recorded()
        real_train, real_evaluate = loop._train_epoch, loop.evaluate
        train_signature = inspect.signature(real_train)
        recorder = self

        def train_epoch(*args, **kwargs):
            bound = train_signature.bind(*args, **kwargs)
            a = bound.arguments
            state = a["state"]
            epoch = Epoch(state.stage, state.epochs, a["batch_size"], a["train"], list(a["callbacks"]), a["runtime"],
                          a["forward"])
            epoch_index = sum(1 for h in state.history if h["stage"] == state.stage)  # completed, resumed ones too
            recorder.seen.epochs.append(epoch)
            forward, loss_fn, mix = a["forward"], a["loss_fn"], a.get("mix")
            pending: dict[str, torch.Tensor] = {}

            def mixing(x, y):
                pending["raw"], pending["labels"] = x.detach().clone(), y.detach().clone()
                return mix(x, y)

            start = a["train"].start

            def recording_forward(module, x):
                logits = forward(module, x)
                groups = [{"name": g.get("name"), "lr": g["lr"], "weight_decay": g["weight_decay"],
                           "shapes": [tuple(p.shape) for p in g["params"]]} for g in state.optimizer.param_groups]
                bn = [m.training for m in state.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
                epoch.steps.append(Step(state.stage, epoch_index, x.detach().clone(), start, logits.detach().clone(),
                                        groups, type(state.optimizer).__name__, bn, state.model,
                                        pending.pop("raw", None), pending.pop("labels", None)))
                return logits

            def recording_loss(logits, targets):
                loss = loss_fn(logits, targets)
                epoch.steps[-1].targets = targets.detach().clone()
                epoch.steps[-1].loss = float(loss.detach())
                return loss

            a["forward"], a["loss_fn"] = recording_forward, recording_loss
            if mix is not None:
                a["mix"] = mixing
            return real_train(*bound.args, **bound.kwargs)

        def evaluate(model, inputs, runtime, batch_size, forward=None, scoring=None):
            seen = Evaluation(recorder.seen.epochs[-1].stage if recorder.seen.epochs else "", [], inputs.start)
            recorder.seen.evaluations.append(seen)
            forward = forward or inputs.forward

            def recording_forward(module, x):
                seen.inputs.append(x.detach().clone())
                return forward(module, x)

            return real_evaluate(model, inputs, runtime, batch_size, recording_forward, scoring)

        monkeypatch.setattr(loop, "_train_epoch", train_epoch)
        monkeypatch.setattr(loop, "evaluate", evaluate)

    def take(self) -> Recorded:
        seen, self.seen = self.seen, Recorded()
        return seen


class ProbeRecorder:
    """The probe's extraction calls (paths and features) and batches, and the scikit-learn pipelines it fitted."""

    def __init__(self, monkeypatch):
        from sklearn.pipeline import Pipeline

        from transferlab.features import extract

        self.extractions: list[tuple[Any, list[Path], np.ndarray]] = []
        self.batches: list[torch.Tensor] = []
        self.fits: list[tuple[Any, np.ndarray, np.ndarray]] = []
        self.output_dtypes: list[torch.dtype] = []
        real_extract, real_forward, real_fit = extract.FeatureExtractor.extract, extract.FeatureExtractor.forward, \
            Pipeline.fit
        recorder = self

        extracting = []

        def extract_(self, paths, *args, **kwargs):
            extracting.append(True)
            try:
                found = real_extract(self, paths, *args, **kwargs)
            finally:
                extracting.pop()
            recorder.extractions.append((self, list(paths), found.features.copy()))
            return found

        def forward(self, x, *args, **kwargs):
            out = real_forward(self, x, *args, **kwargs)
            if extracting:  # not the inference timing's batch
                recorder.batches.append(x.detach().clone())
                recorder.output_dtypes.append(out.dtype)
            return out

        def fit(self, X, y=None, **kwargs):
            recorder.fits.append((self, np.array(X, copy=True), np.array(y, copy=True)))
            return real_fit(self, X, y, **kwargs)

        monkeypatch.setattr(extract.FeatureExtractor, "extract", extract_)
        monkeypatch.setattr(extract.FeatureExtractor, "forward", forward)
        monkeypatch.setattr(Pipeline, "fit", fit)

    def clear(self) -> None:
        for seen in (self.extractions, self.batches, self.fits, self.output_dtypes):
            seen.clear()

    def paths(self, index: int) -> list[Path]:
        """The paths of the ``index``-th extraction (train, val for trained heads, then test)."""
        return self.extractions[index][1]


# -- data and settings ---------------------------------------------------------------------------------------------

TINY = {"backbone": "test_efficientnet", "random_init": True, "image_size": 32, "batch_size": 4, "num_workers": 0,
        "precision": "fp32"}
FINETUNE = {**TINY, "epochs": 1, "early_stopping": "none", "head_init": "sgd", "augment": []}  # mechanisms, not the recipe
PROBE = {**TINY, "head": "logreg"}


def small_folder(root: Path, counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """One folder per class (default a, b, c of 6 images: 12 train, 3 val, 3 test at 0.7/0.15/0.15)."""
    return make_class_folders(root, counts or {"a": 6, "b": 6, "c": 6}, seed=seed)


def split_folder(root: Path, train: int = 4, val: int = 2, test: int = 2) -> Path:
    """Given train/ val/ test/ splits of classes a, b, c: no split depends on the seed."""
    for split, n in (("train", train), ("val", val), ("test", test)):
        make_class_folders(root / split, {"a": n, "b": n, "c": n}, seed={"train": 0, "val": 50, "test": 90}[split])
    return root
