"""Multi-label data: several labels per image, carried as one record beside the splits.

A multi-label dataset (a list file with a ``labels`` column) is split, stratified, cut per class and
folded exactly as a single-label one, with each distinct *set* of labels (``daffodil;yellow``) as a
class of ``DatasetSplits``: every existing path (splits, ``--per-class``, folds) works unchanged.
``LabelSets`` says which labels each such class holds; the model's outputs are the labels themselves
(``names``), one sigmoid each, and its targets the multi-hot rows ``targets`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEPARATOR = ";"


def label_set_name(labels: list[str] | tuple[str, ...]) -> str:
    """The class name of a set of labels: the labels sorted, joined by ``;`` (one name per set, any order given)."""
    return SEPARATOR.join(sorted(set(labels)))


@dataclass(frozen=True)
class LabelSets:
    """The labels (the outputs of a multi-label model) and, per class of the splits, the labels it holds."""

    names: list[str]  # the labels, sorted
    members: list[tuple[int, ...]]  # per class (a distinct label set) of the splits: indices into ``names``

    @classmethod
    def of_classes(cls, classes: list[str]) -> LabelSets:
        """The label sets of classes named ``a;b`` (``label_set_name``)."""
        sets = [name.split(SEPARATOR) for name in classes]
        names = sorted({label for labels in sets for label in labels})
        return cls(names, [tuple(names.index(label) for label in labels) for labels in sets])

    def pick(self, classes: list[int]) -> LabelSets:
        """The label sets of the classes kept (``select_classes``), in their new order."""
        return LabelSets.of_classes([SEPARATOR.join(self.names[i] for i in self.members[c]) for c in classes])

    def targets(self, classes) -> np.ndarray:
        """Multi-hot float32 rows (images x labels) of the images of these classes."""
        rows = np.zeros((len(classes), len(self.names)), dtype=np.float32)
        for row, label in zip(rows, classes):
            row[list(self.members[int(label)])] = 1.0
        return rows
