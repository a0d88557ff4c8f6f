"""A small torch MLP head (e.g. Dense 512 - Dropout 0.2 - Dense 256 - softmax) trained by the engine.

Inputs are standardised per feature (``standardize``), or, for the temperature
experiment's ``softmax`` head, by one mean and one scale for the whole matrix
(``standardize=False``): softmax(logits / T) features are probabilities of about
1/1000 each, and a linear layer trained by Adam moves each logit by at most
lr x sum(features) = lr per step on them (loss 2.078 -> 1.850 in 200 epochs, every
T > 2 at chance). One global scale keeps each vector's shape, which is what the
temperature changes, and gives the optimiser inputs of unit size.

It follows scikit-learn's conventions (``fit`` returns self, ``predict``,
``predict_proba``) so that the probe treats it like the other heads. Validation
data for early stopping is passed to ``fit``; without it a stratified share of
the training data is held out, as sklearn's ``MLPClassifier(early_stopping=True)`` does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from ..engine.callbacks import EarlyStopping, EpochHook
from ..engine.inputs import TensorInputs
from ..engine.loop import fit, predict_tensor
from ..engine.runtime import CPU, Runtime


def mlp_layers(in_dim: int, hidden: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    """Linear layers with ReLU and dropout between them; ``hidden=()`` gives a linear classifier."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class MLPHead:
    def __init__(
        self,
        hidden: tuple[int, ...] = (512, 256),
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 200,
        patience: int = 10,
        monitor: str = "val_loss",
        validation_fraction: float = 0.15,
        standardize: bool = True,
        seed: int = 0,
        runtime: Runtime = CPU,
        on_epoch: Callable[[dict], None] | None = None,
    ):
        self.hidden = tuple(hidden)
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.monitor = monitor
        self.validation_fraction = validation_fraction
        self.standardize = standardize
        self.seed = seed
        self.runtime = runtime
        self.on_epoch = on_epoch  # after each epoch, with its record (the run's logging)

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None):
        # Seed the global RNG too (dropout draws from it), without disturbing the caller's.
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return self._fit(X, y, X_val, y_val)

    def _fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None):
        if X_val is None or y_val is None or len(y_val) == 0:
            X, X_val, y, y_val = train_test_split(
                X, y, test_size=self.validation_fraction, stratify=y, random_state=self.seed
            )
        self.classes_ = np.unique(np.concatenate([y, y_val]))
        if self.standardize:
            self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-6
        else:  # one mean and one scale for every feature: the vectors keep their shape
            self.mean_ = np.full(X.shape[1], X.mean(), X.dtype)
            self.scale_ = np.full(X.shape[1], X.std() + 1e-12, X.dtype)
        self.model_ = mlp_layers(X.shape[1], self.hidden, len(self.classes_), self.dropout)
        self.runtime.prepare(self.model_)
        train = TensorInputs(self._inputs(X), torch.as_tensor(np.searchsorted(self.classes_, y)))
        val = TensorInputs(self._inputs(X_val), torch.as_tensor(np.searchsorted(self.classes_, y_val)))
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        stopper = EarlyStopping(self.monitor, self.patience)
        model = self.model_
        state = fit(model, lambda module, x, start: module(x), nn.CrossEntropyLoss(), optimizer, None, train, val,
                    epochs=self.max_epochs, runtime=self.runtime, batch_size=self.batch_size, seed=self.seed,
                    stage="head", callbacks=[stopper, *([EpochHook(self.on_epoch)] if self.on_epoch else [])])
        dropped = ("stage", "samples")  # the probe head keeps lr and seconds per epoch, like fine-tuning
        self.history_ = [{k: v for k, v in h.items() if k not in dropped} for h in state.history]
        self.best_epoch_ = stopper.best_epoch + 1
        self.model_.eval()
        return self

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(((X - self.mean_) / self.scale_).astype(np.float32))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = predict_tensor(self.model_, self.model_, self._inputs(X), self.runtime)
        return logits.softmax(dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
