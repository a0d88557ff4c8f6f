"""How far a model's confidence is from its accuracy, and the temperature that closes the gap.

Expected calibration error (ECE) and the reliability diagram's bins follow Guo et al. 2017
("On Calibration of Modern Neural Networks"): the top label's probability, 15 equal-width
bins over [0, 1], ECE = sum over bins of |accuracy - mean confidence| weighted by the bin's
share of the images. Temperature scaling divides the logits by one scalar T fitted on the
validation set's negative log-likelihood with LBFGS (their section 4.2); it leaves every
argmax, so accuracy, unchanged.
"""

from __future__ import annotations

import numpy as np

BINS = 15
TEMPERATURES = (1e-2, 1e2)  # the range T is fitted in: beyond it the probabilities are one-hot or uniform anyway


def reliability_bins(probabilities, labels, bins: int = BINS) -> dict[str, list]:
    """Per equal-width confidence bin: mean top-label confidence, accuracy and image count (empty bins: 0)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot occur for a top label
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    safe = np.maximum(count, 1)
    return {"confidence": (np.bincount(index, confidence, bins) / safe).tolist(),
            "accuracy": (np.bincount(index, correct, bins) / safe).tolist(),
            "count": count.tolist()}


def expected_calibration_error(probabilities, labels, bins: int = BINS) -> float:
    """Top-label ECE over ``bins`` equal-width bins (0: confidence matches accuracy in every bin)."""
    return ece_of_reliability(reliability_bins(probabilities, labels, bins))


def ece_of_reliability(table: dict) -> float:
    """The ECE that a stored ``reliability_bins`` table gives (the report redraws and restates it)."""
    count = np.asarray(table["count"], dtype=np.float64)
    gap = np.abs(np.asarray(table["accuracy"]) - np.asarray(table["confidence"]))
    return float((gap * count).sum() / max(count.sum(), 1.0))


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The T minimising the mean cross-entropy of ``softmax(logits / T)`` (LBFGS on log T, as Guo et al.), within
    ``TEMPERATURES`` (a model at chance would drive T to infinity)."""
    import torch

    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    low, high = (float(np.log(t)) for t in TEMPERATURES)

    def bounded(log_t):
        return log_t.clamp(low, high)

    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / bounded(log_t).exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(bounded(log_t.detach()).exp())
