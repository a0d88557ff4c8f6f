"""Find a dataset's classes and splits in a folder, and cut it down as asked.

Two layouts are understood:
- one sub-folder per class: split here, stratified, by ratios and a seed;
- ``train/`` plus ``val/`` (or ``validation/``) and/or ``test/``, each with one
  sub-folder per class. With ``train/`` and ``val/`` only (the PyTorch tutorial's
  layout) results are reported on ``val/``; a validation split for early stopping
  is then carved from ``train/`` (see ``DatasetSplits.train_and_validation``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from sklearn.model_selection import train_test_split

from ..errors import UserError
from .builtin import require_data_folder, resolve_data_path

SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


@dataclass(frozen=True)
class Sample:
    path: Path  # an image file, or a ``memory.MemoryImage`` (a record of a dataset file)
    label: int


@dataclass(frozen=True)
class DatasetSplits:
    """The images of a dataset, split, with the name of the split results are reported on."""

    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample] | None  # None: no validation split given; carve one when needed
    test: list[Sample]
    evaluated_on: str  # e.g. "val/", "test/", "test (15% split, seed 0)"
    notes: list[str] = field(default_factory=list)

    def train_and_validation(self, fraction: float = 0.15, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
        """Training and validation samples; validation carved from train (stratified) if none is given."""
        if self.val is not None:
            return self.train, self.val
        return stratified_split(self.train, fraction, seed)

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val or []), "test": len(self.test)}


def is_candidate_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".")


def class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_class_folders(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Sample]]:
    """Samples of a folder laid out one sub-folder per class (every non-hidden file is a candidate)."""
    found = class_folders(folder)
    names = [p.name for p in found]
    if classes is None:
        classes = names
    else:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise UserError(f"{folder} has classes that training does not have: {', '.join(extra)}")
    samples = []
    for class_dir in found:
        files = sorted(p for p in class_dir.rglob("*") if is_candidate_file(p))
        if not files:
            raise UserError(f"class folder {class_dir} has no images")
        label = classes.index(class_dir.name)
        samples.extend(Sample(p, label) for p in files)
    return classes, samples


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off ``fraction`` of the samples, the same share of every class, reproducibly."""
    labels = [s.label for s in samples]
    per_class = defaultdict(int)
    for label in labels:
        per_class[label] += 1
    if min(per_class.values()) < 2:
        raise UserError("a class has fewer than 2 images: too few to split off a validation or test set")
    n_classes = len(per_class)
    n_split = max(n_classes, round(fraction * len(samples)))
    if len(samples) - n_split < n_classes:
        raise UserError("too few images per class to split off a validation or test set")
    kept, split = train_test_split(samples, test_size=n_split, stratify=labels, random_state=seed)
    return kept, split


def find_splits(root: Path) -> dict[str, Path]:
    splits: dict[str, Path] = {}
    for child in class_folders(root):
        role = SPLIT_NAMES.get(child.name.lower())
        if role and role not in splits:
            splits[role] = child
    return splits if "train" in splits and len(splits) > 1 else {}


def load_splits(
    root: Path | str,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> DatasetSplits:
    """Read the folder (or built-in dataset, list file, CIFAR binary folder) and split it (or take its given
    splits)."""
    require_data_folder(root)
    root = resolve_data_path(root)
    from .sources import read_source

    other = read_source(root, ratios, seed)
    if other is not None:
        return other
    given = find_splits(root)
    if given:
        classes, train = read_class_folders(given["train"])
        _require_two_classes(classes, given["train"])
        val = read_class_folders(given["val"], classes)[1] if "val" in given else None
        if "test" in given:
            test = read_class_folders(given["test"], classes)[1]
            evaluated_on = f"{given['test'].name}/"
        else:
            test, val = val, None
            evaluated_on = f"{given['val'].name}/"
        return DatasetSplits(root, classes, train, val, test, evaluated_on)

    classes, samples = read_class_folders(root)
    _require_two_classes(classes, root)
    return split_by_ratios(root, classes, samples, ratios, seed)


def split_by_ratios(root: Path, classes: list[str], samples: list[Sample], ratios: tuple[float, float, float],
                    seed: int) -> DatasetSplits:
    """Stratified train/val/test splits of ``samples`` by ``ratios`` (val may be 0: carved when needed)."""
    train_ratio, val_ratio, test_ratio = ratios
    total = train_ratio + val_ratio + test_ratio
    rest, test = stratified_split(samples, test_ratio / total, seed)
    train, val = stratified_split(rest, val_ratio / (train_ratio + val_ratio), seed) if val_ratio > 0 else (rest, None)
    evaluated_on = f"test ({test_ratio / total:.0%} stratified split, seed {seed})"
    return DatasetSplits(root, classes, train, val, test, evaluated_on)


def _require_two_classes(classes: list[str], folder: Path) -> None:
    if len(classes) < 2:
        found = f" ({classes[0]})" if classes else ""
        raise UserError(f"{folder} needs at least two class folders, found {len(classes)}{found}")


def select_classes(splits: DatasetSplits, names: list[str] | None = None, count: int | None = None) -> DatasetSplits:
    """Keep only some classes, by name or the first ``count`` in sorted order; labels renumbered."""
    if names is None and count is None:
        return splits
    if names is not None:
        unknown = [n for n in names if n not in splits.classes]
        if unknown:
            raise UserError(f"unknown class {unknown[0]!r}: the classes are {', '.join(splits.classes)}")
        keep = [c for c in splits.classes if c in names]
    else:
        if count is None or not 2 <= count <= len(splits.classes):
            raise UserError(f"--num-classes must be between 2 and {len(splits.classes)}, got {count}")
        keep = splits.classes[:count]
    if len(keep) < 2:
        raise UserError("keep at least two classes")
    relabel = {splits.classes.index(c): i for i, c in enumerate(keep)}

    def pick(samples: list[Sample] | None) -> list[Sample] | None:
        if samples is None:
            return None
        return [Sample(s.path, relabel[s.label]) for s in samples if s.label in relabel]

    return replace(splits, classes=keep, train=pick(splits.train), val=pick(splits.val), test=pick(splits.test))


def limit_per_class(splits: DatasetSplits, per_class: int | None, seed: int = 0) -> DatasetSplits:
    """Keep ``per_class`` training images per class, chosen at random with ``seed``."""
    if per_class is None:
        return splits
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {per_class}")
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in splits.train:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    kept: list[Sample] = []
    short = []
    for label in sorted(by_class):
        pool = by_class[label]
        if len(pool) < per_class:
            short.append(f"{splits.classes[label]} ({len(pool)})")
        kept.extend(rng.sample(pool, min(per_class, len(pool))))
    notes = list(splits.notes)
    if short:
        notes.append(f"fewer than {per_class} training images in: {', '.join(short)}")
    return replace(splits, train=sorted(kept, key=lambda s: (s.label, str(s.path))), notes=notes)


def load_dataset(
    data,
    *,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    per_class: int | None = None,
    folds: int | None = None,
    fold: int | None = None,
) -> DatasetSplits:
    """A dataset folder (or built-in name) read, split (or fold ``fold`` of ``folds``-fold cross-validation,
    see ``data.folds``), and cut down to the classes and sizes asked for."""
    splits = load_splits(data, ratios=ratios, seed=seed)
    splits = select_classes(splits, classes, num_classes)
    if folds is not None:
        from .folds import cross_validation_fold

        if fold is None:
            raise UserError(f"folds {folds} without a fold: run every fold with transferlab.crossval.run_folds "
                            f"(the command line's --folds), or one with fold=0..{folds - 1}")
        splits = cross_validation_fold(splits, folds, fold, seed)
    return limit_per_class(splits, per_class, seed)
