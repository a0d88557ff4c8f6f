"""A small torch MLP head (e.g. Dense 512 - Dropout 0.2 - Dense 256 - softmax), a scikit-learn classifier
trained by the engine.

``MLPHead`` is a ``BaseEstimator``/``ClassifierMixin``: ``__init__`` only stores
its parameters, ``fit(X, y)`` returns self, learned state ends in ``_``, so it
clones, sits in a ``Pipeline`` and goes through ``GridSearchCV``. Early stopping
watches a validation set: the one ``fit`` is given (``X_val``, ``y_val``: the
probe's own validation images), else a stratified ``validation_fraction`` of the
training data, as sklearn's ``MLPClassifier(early_stopping=True)`` holds out.

Inputs are scaled (``scaling``, see ``heads.scaling``) with statistics of the training data:
``standard`` per feature with a floor on the scale (a feature constant over a few training
images cannot explode on new ones), ``global`` by one mean and one scale for the whole matrix,
for the temperature experiment's ``softmax`` head: softmax(logits / T) features are
probabilities of about 1/1000 each, and a linear layer trained by Adam moves each logit by at
most lr x sum(features) = lr per step on them (loss 2.078 -> 1.850 in 200 epochs, every T > 2
at chance); one scale keeps each vector's shape, which is what the temperature changes, and
gives the optimiser inputs of unit size. ``none``: as given (behind a scaler in a ``Pipeline``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ..engine.callbacks import EarlyStopping, EpochHook
from ..engine.inputs import TensorInputs
from ..engine.learner import Learner
from ..engine.loop import predict_tensor
from ..engine.runtime import CPU, Runtime
from .scaling import SCALINGS, feature_scaling
from .spec import HEAD_WEIGHT_DECAY


def mlp_layers(in_dim: int, hidden: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    """Linear layers with ReLU and dropout between them; ``hidden=()`` gives a linear classifier."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class MLPHead(ClassifierMixin, BaseEstimator):
    """Softmax classifier (``hidden=()``) or MLP on feature vectors, trained by the engine's ``Learner`` with Adam.

    ``validation_fraction``: the stratified share of the training data held out for early
    stopping when ``fit`` gets no validation set (0: none, train ``max_epochs`` epochs and keep
    the last weights). ``monitor``: ``val_loss``, ``val_accuracy`` or ``none`` (validate, never
    stop). ``on_epoch`` is called after each epoch with its record (the run's logging).
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (512, 256),
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = HEAD_WEIGHT_DECAY["linear"],
        batch_size: int = 64,
        max_epochs: int = 200,
        patience: int = 10,
        monitor: str = "val_loss",
        validation_fraction: float = 0.15,
        scaling: str = "standard",
        seed: int = 0,
        runtime: Runtime | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ):
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.monitor = monitor
        self.validation_fraction = validation_fraction
        self.scaling = scaling
        self.seed = seed
        self.runtime = runtime
        self.on_epoch = on_epoch

    def fit(self, X, y, X_val=None, y_val=None):
        """Train on ``X``, ``y``; stop early on ``X_val``, ``y_val`` when given (else on a held-out share)."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        if X_val is not None and y_val is not None and len(y_val):
            X_val = validate_data(self, X_val, reset=False, dtype=[np.float32, np.float64])
            y_val = np.asarray(y_val)
        elif self.validation_fraction > 0:
            X, X_val, y, y_val = self._hold_out(X, y)
        else:
            X_val = y_val = None
        # Model initialisation draws from the global RNG: seed it without disturbing the caller's.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self._fit(X, y, X_val, y_val)

    def _check_params(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def _hold_out(self, X: np.ndarray, y: np.ndarray):
        try:
            return train_test_split(X, y, test_size=self.validation_fraction, stratify=y, random_state=self.seed)
        except ValueError as exc:
            raise ValueError(f"cannot hold out validation_fraction={self.validation_fraction} of {len(y)} samples "
                             f"stratified ({exc}); pass a validation set or validation_fraction=0") from None

    def _fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None):
        runtime = self.runtime or CPU
        self.classes_ = np.unique(y if y_val is None else np.concatenate([y, y_val]))
        self.mean_, self.scale_ = feature_scaling(X, self.scaling)
        self.model_ = mlp_layers(X.shape[1], tuple(self.hidden), len(self.classes_), self.dropout)
        runtime.prepare(self.model_)
        train = TensorInputs(self._inputs(X), torch.as_tensor(np.searchsorted(self.classes_, y)))
        val = None if y_val is None else TensorInputs(self._inputs(X_val),
                                                      torch.as_tensor(np.searchsorted(self.classes_, y_val)))
        stopper = EarlyStopping(self.monitor if val is not None else "none", self.patience)
        hooks = [EpochHook(self.on_epoch)] if self.on_epoch else []
        learner = Learner(self.model_, runtime, nn.CrossEntropyLoss(), self._optimizer, train, val,
                          batch_size=self.batch_size, seed=self.seed, callbacks=[stopper, *hooks])
        state = learner.fit(self.max_epochs, "head")
        dropped = ("stage", "samples")  # the probe head keeps lr and seconds per epoch, like fine-tuning
        self.history_ = [{k: v for k, v in h.items() if k not in dropped} for h in state.history]
        self.best_epoch_ = stopper.best_epoch + 1
        self.model_.eval()
        return self

    def _optimizer(self, model: nn.Module, stage: str) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32))

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        logits = predict_tensor(self.model_, self.model_, self._inputs(X), self.runtime or CPU)
        return logits.softmax(dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
