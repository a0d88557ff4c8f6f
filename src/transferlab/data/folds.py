"""Stratified K-fold cross-validation: every image is tested exactly once over K runs.

On a small set one held-out split is one draw of a noisy figure; K folds use every image
for testing once and give K accuracies whose mean has an interval. The folds are
scikit-learn's ``StratifiedKFold`` (shuffled with the run's seed), over *all* the images
of the dataset: a folder with given ``train/ val/ test/`` splits is pooled first (with a
note saying so), since cross-validation replaces those splits. A validation split, where
a head or fine-tuning needs one, is carved from the fold's training images.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

from sklearn.model_selection import StratifiedKFold

from ..errors import UserError
from ..options import check_folds
from .layout import DatasetSplits, Sample, find_splits


def pooled(splits: DatasetSplits) -> list[Sample]:
    """All the images of the dataset, whatever split they were in, in a fixed order."""
    every = list(splits.train) + list(splits.val or []) + list(splits.test)
    return sorted(every, key=lambda s: (str(s.path), s.label))


def fold_indices(labels: list[int], folds: int, seed: int) -> list[list[int]]:
    """The test positions of each of ``folds`` stratified folds (together: every position once)."""
    counts = Counter(labels)
    fewest, label = min((n, label) for label, n in counts.items())
    if fewest < folds:
        raise UserError(f"a class has {fewest} image(s), too few for {folds} folds: each fold needs one of every "
                        f"class (use fewer folds)")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test.tolist() for _, test in splitter.split([[0]] * len(labels), labels)]


def cross_validation_fold(splits: DatasetSplits, folds: int, fold: int, seed: int = 0) -> DatasetSplits:
    """Fold ``fold`` of ``folds``: its images are the test set, the other folds' the training set."""
    check_folds(SimpleNamespace(folds=folds, fold=fold))
    samples = pooled(splits)
    tested = set(fold_indices([s.label for s in samples], folds, seed)[fold])
    test = [s for i, s in enumerate(samples) if i in tested]
    train = [s for i, s in enumerate(samples) if i not in tested]
    notes = list(splits.notes)
    given = find_splits(splits.root) if splits.root.is_dir() else {}
    if given:
        notes.append(f"cross-validation pools the given splits ({', '.join(p.name + '/' for p in given.values())}) "
                     f"of {splits.root}: {len(samples)} images in {folds} folds")
    evaluated_on = (f"fold {fold} of {folds} (stratified {folds}-fold cross-validation of {len(samples)} images, "
                    f"seed {seed})")
    return replace(splits, train=train, val=None, test=test, evaluated_on=evaluated_on, notes=notes)
