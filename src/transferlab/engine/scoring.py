"""How the loop scores a batch: its summed loss and how many of its samples are right.

Single-label (the default, ``None`` where a scoring is taken): cross-entropy and the arg-max class.
Multi-label (``MultiLabelScoring``): the labels a sample has come from its class, a set of labels
(``data.labelsets``), so the sources keep carrying one integer per sample; the loss is the binary
cross-entropy of one sigmoid per label (``BCEWithLogitsLoss``), and a sample is right when every one
of its labels is (subset accuracy, at probability 0.5). A ``MultiLabelScoring`` is also the training
loss: ``scoring(logits, classes)`` is the mean binary cross-entropy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MultiLabelScoring(nn.Module):
    """Binary cross-entropy over the multi-hot rows of each sample's label set."""

    def __init__(self, label_rows: np.ndarray):
        super().__init__()
        self.register_buffer("rows", torch.as_tensor(label_rows, dtype=torch.float32))  # (classes, labels)

    def targets(self, classes: torch.Tensor) -> torch.Tensor:
        """The multi-hot rows of these samples' classes, on the classes' device."""
        return self.rows.to(classes.device)[classes]

    def forward(self, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, self.targets(classes))

    def loss_sum(self, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Each sample's binary cross-entropy (the mean over its labels), summed."""
        per_label = nn.functional.binary_cross_entropy_with_logits(logits, self.targets(classes), reduction="none")
        return per_label.mean(1).sum()

    def correct(self, logits: torch.Tensor, classes: torch.Tensor) -> int:
        return int(((logits > 0) == (self.targets(classes) > 0.5)).all(1).sum())


def loss_sum(scoring, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The batch's summed loss: cross-entropy without a scoring."""
    if scoring is None:
        return nn.functional.cross_entropy(logits, labels, reduction="sum")
    return scoring.loss_sum(logits, labels)


def correct(scoring, logits: torch.Tensor, labels: torch.Tensor) -> int:
    """The batch's samples predicted right: the arg-max class without a scoring."""
    if scoring is None:
        return int((logits.argmax(1) == labels).sum())
    return scoring.correct(logits, labels)
