"""Stage 1 of two-stage fine-tuning as the probe: the new linear classifier set to the logistic regression
the probe fits on the same frozen features (LP-FT, Kumar et al., ICLR 2022).

Stage 2 then starts from the probe's own decision rule instead of a head trained for a few epochs by
Adam, and with early stopping's baseline at stage 1's validation score (``EarlyStopping.start_from``),
a fine-tune ends at the probe's weights unless unfreezing did better on the validation images. The
regression is the probe's ``logreg`` head (floored standardisation, C=0.1); its scaling folds into the
linear layer's weights, so the network computes exactly the probe's logits. Multi-label data (a ``scoring``
from ``engine.scoring``) gets the multi-label probe's one-vs-rest regressions, one logit per label
(``finetune.multilabel.fold_one_vs_rest``): stage 1 with binary cross-entropy learns slowly, the probe does not.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..engine.loop import evaluate
from ..engine.runtime import Runtime
from ..heads.sklearn_heads import logreg_head, one_vs_rest_logreg_head


def final_linear(classifier: nn.Module) -> nn.Linear | None:
    """The classifier's output layer when the classifier is linear (a flatten may precede it); None for an mlp."""
    layers = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    return layers[0] if len(layers) == 1 else None


def head_inputs(model: nn.Module, linear: nn.Linear, inputs, runtime: Runtime, batch_size: int):
    """What ``linear`` receives for every sample of ``inputs`` (eval mode, in order), with the labels."""
    captured: list[torch.Tensor] = []
    hook = linear.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach().float().cpu()))
    labels: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y, _ in inputs.batches(batch_size, range(len(inputs))):
                with runtime.autocast():
                    inputs.forward(model, runtime.inputs(x))
                labels.append(y)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).numpy(), torch.cat(labels).numpy()


def fit_probe_head(linear: nn.Linear, X: np.ndarray, y: np.ndarray, seed: int, scoring=None) -> None:
    """Set ``linear`` to the probe's logistic regression fitted on ``X`` (what ``linear`` receives) and ``y``
    (multi-label, with a ``scoring``: the one-vs-rest regressions on the multi-hot targets)."""
    if scoring is not None:
        from .multilabel import fold_one_vs_rest

        targets = scoring.targets(torch.as_tensor(y, dtype=torch.long)).numpy()
        weight, bias = fold_one_vs_rest(one_vs_rest_logreg_head(seed=seed).fit(X, targets), linear.out_features)
        _set_linear(linear, weight, bias)
        return
    pipeline = logreg_head(seed=seed).fit(X, y)
    scaler, regression = pipeline[0], pipeline[-1]
    coef = regression.coef_ / scaler.scale_  # logits of x: coef . (x - mean) / scale + intercept
    intercept = regression.intercept_ - coef @ scaler.mean_
    if len(regression.classes_) == 2:  # one score for the second class: the first class's logit is 0
        coef, intercept = np.vstack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
    weight = np.zeros(tuple(linear.weight.shape))
    bias = np.full(linear.out_features, intercept.min() - 10.0)  # a class with no training image: never chosen
    weight[regression.classes_] = coef
    bias[regression.classes_] = intercept
    _set_linear(linear, weight, bias)


def _set_linear(linear: nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        if linear.bias is not None:
            linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))


def probe_stage(model: nn.Module, train, val, runtime: Runtime, batch_size: int, seed: int, stage: str,
                epoch: int, scoring=None) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
    """Stage 1 done as the probe: fit the head; the history record of the one 'epoch' it counts as, and the head's
    inputs and labels of the training (and validation) images, for a refit at the end."""
    started = time.perf_counter()
    linear = final_linear(model.classifier)
    assert linear is not None, "the probe's head initialisation needs a linear head"
    features = [head_inputs(model, linear, part, runtime, batch_size) for part in (train, val)
                if part is not None and len(part)]
    fit_probe_head(linear, *features[0], seed, scoring)
    trained = evaluate(model, train, runtime, batch_size, scoring=scoring)
    record = {"epoch": epoch, "stage": stage, "head_fit": "logreg", "lr": 0.0,
              "train_loss": trained["loss"], "train_accuracy": trained["accuracy"]}
    if val is not None and len(val):
        scores = evaluate(model, val, runtime, batch_size, scoring=scoring)
        record.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
    record["seconds"] = time.perf_counter() - started
    return record, features
