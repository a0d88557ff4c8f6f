"""Find a dataset's classes and splits in a folder, and cut it down as asked.

Two layouts are understood:
- one sub-folder per class: split here, stratified, by ratios and a seed;
- ``train/`` plus ``val/`` (or ``validation/``) and/or ``test/``, each with one
  sub-folder per class. With ``train/`` and ``val/`` only (the PyTorch tutorial's
  layout) results are reported on ``val/``; a validation split for early stopping
  is then carved from ``train/`` (by the validation share of the ratios, or
  ``val_per_class`` images per class) beside the training images, which are the
  same ``per_class`` images a method without a validation set trains on.

Sizes: ``per_class`` is the number of training images per class, for every method
(validation is never carved out of it); ``val_per_class`` / ``test_per_class`` set the
validation and test images per class, on folders with and without given splits. Split
ratios do not apply to a folder with its own train/ val/ test folders (a note says so);
on a folder with train/ and val/ or test/ only, the validation share of the ratios
sets how much of train/ is carved for validation.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from PIL import Image
from sklearn.model_selection import train_test_split

from ..errors import UserError
from ..storage import file_digest
from .builtin import require_data_folder, resolve_data_path
from .images import UNREADABLE_ERRORS, UnreadableImage
from .labelsets import LabelSets
from .packed import sort_name

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
MIN_VAL_PER_CLASS = 5  # fewer validation images per class than this (or in all than MIN_VAL_IMAGES):
MIN_VAL_IMAGES = 10  # early stopping would follow noise, so it is off by default
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


@dataclass(frozen=True)
class Sample:
    path: Path  # an image file, a ``memory.MemoryImage`` (a record of a dataset file) or a ``packed.PackedImage``
    label: int


def sample_order(sample: Sample) -> tuple[int, str]:
    """Samples sort by class, then by path (a packed image by its name: data packed from a folder sorts as it)."""
    return sample.label, sort_name(sample.path)


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
    val_from_train: bool = False  # validation carved out of the training images (a method without one trains on them)
    label_sets: LabelSets | None = None  # multi-label data: each class is a set of labels (``data.labelsets``)

    def train_and_validation(self, fraction: float = 0.15, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
        """Training and validation samples; validation carved from train (stratified) if none is given."""
        if self.val is not None:
            return self.train, self.val
        return stratified_split(self.train, fraction, seed)

    @property
    def outputs(self) -> list[str]:
        """What a model of this data predicts: its classes, or for multi-label data its labels."""
        return self.label_sets.names if self.label_sets is not None else self.classes

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val or []), "test": len(self.test)}

    def small_validation(self) -> str | None:
        """Why the validation set is too small to stop on (None: it is not, or there is none)."""
        if not self.val:
            return None
        sizes = per_class_counts(self.val)
        smallest = min(sizes.get(label, 0) for label in range(len(self.classes)))
        if smallest < MIN_VAL_PER_CLASS or len(self.val) < MIN_VAL_IMAGES:
            return (f"the validation set has {len(self.val)} images ({smallest} in its smallest class): too few to "
                    f"stop on (fewer than {MIN_VAL_PER_CLASS} per class or {MIN_VAL_IMAGES} in all)")
        return None


def per_class_counts(samples: list[Sample]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for sample in samples:
        counts[sample.label] += 1
    return dict(counts)


def take_per_class(samples: list[Sample], count: int, seed: int, what: str,
                   classes: list[str]) -> tuple[list[Sample], list[Sample]]:
    """``count`` samples of every class chosen at random with ``seed``, and the rest; a UserError if a class has
    no more than ``count`` (nothing would be left for training)."""
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    taken: list[Sample] = []
    for label in sorted(by_class):
        pool = sorted(by_class[label], key=sample_order)
        if len(pool) <= count:
            raise UserError(f"{what}: class {classes[label]} has {len(pool)} images, too few to take {count} and keep "
                            "some for training")
        taken.extend(rng.sample(pool, count))
    chosen = set(taken)
    return sorted(taken, key=sample_order), sorted((s for s in samples if s not in chosen), key=sample_order)


def cut_per_class(samples: list[Sample], count: int | None, seed: int) -> list[Sample]:
    """At most ``count`` samples of every class, chosen at random with ``seed`` (all of them for None)."""
    if count is None:
        return samples
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    kept = [s for label in sorted(by_class)
            for s in rng.sample(sorted(by_class[label], key=sample_order), min(count, len(by_class[label])))]
    return sorted(kept, key=sample_order)


def is_candidate_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".")


def _folder_error(folder: Path, exc: OSError) -> UserError:
    reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc)).lower()
    return UserError(f"cannot read folder {folder}: {reason}")


def class_folders(folder: Path) -> list[Path]:
    try:
        children = list(folder.iterdir())
    except OSError as exc:
        raise _folder_error(folder, exc) from None
    return sorted(p for p in children if p.is_dir() and not p.name.startswith("."))


def candidate_files(class_dir: Path) -> list[Path]:
    """Every non-hidden file under ``class_dir``; a folder that cannot be listed is an error, not 'no images'."""
    failures: list[OSError] = []
    files = []
    for here, dirs, names in os.walk(class_dir, onerror=failures.append, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(here) / name for name in names if not name.startswith("."))
    if failures:
        failed = failures[0]
        raise _folder_error(Path(failed.filename) if failed.filename else class_dir, failed) from None
    return sorted(p for p in files if p.is_file())


def opens_as_image(path: Path) -> bool:
    """Whether PIL reads an image header from ``path`` (cheap: nothing is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.size[0] > 0 and image.size[1] > 0
    except (*UNREADABLE_ERRORS, UnreadableImage):
        return False


def file_identity(path: Path) -> tuple[int, int]:
    """The file behind ``path`` (follows symlinks: a link, a hard link and its target are one file)."""
    info = path.stat()
    return info.st_dev, info.st_ino


def check_no_shared_images(by_class: dict[str, list[Path]]) -> None:
    """The same image under two class folders (a symlink, a hard link or a copy) is an error naming both."""
    shared = find_shared_image(by_class)
    if shared is not None:
        raise UserError(f"the same image is in two classes: {shared[0]} and {shared[1]}")


def find_shared_image(by_class: dict[str, list[Path]]) -> tuple[Path, Path] | None:
    """Two paths of one image under two classes, the earlier first; None when every image has one class.

    Files are the same when they are one file on disk, or have the same size and the same
    content digest; only files whose size occurs in more than one class are read.
    """
    seen: dict[tuple[int, int], tuple[str, Path]] = {}
    sizes: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for name, files in by_class.items():
        for path in files:
            identity = file_identity(path)
            earlier = seen.get(identity)
            if earlier is not None and earlier[0] != name:
                return earlier[1], path
            seen.setdefault(identity, (name, path))
            sizes[path.stat().st_size].append((name, path))
    for group in sizes.values():
        if len({name for name, _ in group}) < 2:
            continue
        digests: dict[str, tuple[str, Path]] = {}
        for name, path in group:
            try:
                digest = file_digest(path)
            except OSError:
                continue  # unreadable: dropped when decoded
            earlier = digests.get(digest)
            if earlier is not None and earlier[0] != name:
                return earlier[1], path
            digests.setdefault(digest, (name, path))
    return None


@dataclass(frozen=True)
class ClassScan:
    """The classes and samples of a folder laid out one sub-folder per class."""

    classes: list[str]
    samples: list[Sample]
    dropped: list[str]  # class folders none of whose files is an image


def scan_class_folders(folder: Path, classes: list[str] | None = None, skip: Iterable[str] = ()) -> ClassScan:
    """Samples of a folder laid out one sub-folder per class (every non-hidden file is a candidate).

    A class folder none of whose files opens as an image is dropped with a warning;
    the folders named in ``skip`` (dropped from another split) are left out.
    """
    skip = set(skip)
    found = [p for p in class_folders(folder) if p.name not in skip]
    names = [p.name for p in found]
    if classes is not None:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise UserError(f"{folder} has classes that training does not have: {', '.join(extra)}")
    by_class: dict[str, list[Path]] = {}
    dropped = []
    for class_dir in found:
        files = candidate_files(class_dir)
        if not files:
            raise UserError(f"class folder {class_dir} has no images")
        if not any(opens_as_image(p) for p in files):
            log.warning("class folder %s has no readable image among its %d files: class %s left out",
                        class_dir, len(files), class_dir.name)
            dropped.append(class_dir.name)
            continue
        by_class[class_dir.name] = files
    check_no_shared_images(by_class)
    if classes is None:
        classes = list(by_class)
    samples = [Sample(p, classes.index(name)) for name, files in by_class.items() for p in files]
    return ClassScan(classes, samples, dropped)


def read_class_folders(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Sample]]:
    """``scan_class_folders`` without the dropped classes' names."""
    scan = scan_class_folders(folder, classes)
    return scan.classes, scan.samples


def _dropped_note(dropped: list[str]) -> list[str]:
    return [f"left out class(es) with no readable image: {', '.join(dropped)}"] if dropped else []


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
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
    val_per_class: int | None = None,
    test_per_class: int | None = None,
) -> DatasetSplits:
    """Read the folder (or built-in dataset, list file, CIFAR binary folder, tar shards, ``hf:`` dataset) and split it
    (or take its given splits, cut to the sizes asked)."""
    from .sources import read_packed

    packed = read_packed(root, ratios, seed, val_per_class, test_per_class)
    if packed is not None:
        return packed
    require_data_folder(root)
    root = resolve_data_path(root)
    from .sources import read_source

    other = read_source(root, ratios, seed)
    if other is not None:
        return cut_given_splits(other, val_per_class, test_per_class, seed)
    given = find_splits(root)
    if given:
        scan = scan_class_folders(given["train"])
        classes, train = scan.classes, scan.samples
        _require_two_classes(classes, given["train"], scan.dropped)
        val = scan_class_folders(given["val"], classes, scan.dropped).samples if "val" in given else None
        notes = _dropped_note(scan.dropped)
        if tuple(ratios) != DEFAULT_RATIOS:
            shown = ",".join(f"{r:g}" for r in ratios)
            notes.append(f"split ratios {shown} do not apply: {root} has its own train/ val/ test/ folders "
                         "(cut them with val_per_class / test_per_class)" if "test" in given and val is not None else
                         f"split ratios {shown}: only their validation share applies to {root}, which has its own "
                         "splits (it sets the validation images carved from train/ for methods that need them)")
        if "test" in given:
            test = scan_class_folders(given["test"], classes, scan.dropped).samples
            evaluated_on = f"{given['test'].name}/"
        else:
            test, val = val, None
            evaluated_on = f"{given['val'].name}/"
        splits = DatasetSplits(root, classes, train, val, test, evaluated_on, notes)
        return cut_given_splits(splits, val_per_class, test_per_class, seed)

    scan = scan_class_folders(root)
    _require_two_classes(scan.classes, root, scan.dropped)
    return split_by_ratios(root, scan.classes, scan.samples, ratios, seed, _dropped_note(scan.dropped),
                           val_per_class, test_per_class)


def named_splits(root: Path, parts: dict[str, list[tuple[str, object]]], unit: str,
                 ratios: tuple[float, float, float], seed: int, val_per_class: int | None,
                 test_per_class: int | None) -> DatasetSplits:
    """Splits of images named by class (``parts``: split -> (class name, image)), as a folder's: ``train`` with
    ``val`` and/or ``test`` are given splits; ``train`` alone is one pool split by ratios. Classes sorted by name,
    each split's samples by class and name, so that data packed from a folder gives the folder's splits."""
    classes = sorted({name for name, _ in parts["train"]})
    if len(classes) < 2:
        found = f" ({classes[0]})" if classes else ""
        raise UserError(f"{root} needs at least two classes, found {len(classes)}{found}")

    def samples(role: str) -> list[Sample]:
        extra = sorted({name for name, _ in parts[role]} - set(classes))
        if extra:
            raise UserError(f"the {role} {unit} of {root} have classes that training does not have: {', '.join(extra)}")
        return sorted((Sample(image, classes.index(name)) for name, image in parts[role]), key=sample_order)

    if set(parts) == {"train"}:
        return split_by_ratios(root, classes, samples("train"), ratios, seed, [], val_per_class, test_per_class)
    notes = []
    val = samples("val") if "val" in parts else None
    if tuple(ratios) != DEFAULT_RATIOS:
        notes.append(f"split ratios {','.join(f'{r:g}' for r in ratios)}: {root} has its own splits (only their "
                     "validation share applies, to the images carved from train for methods that need them)")
    if "test" in parts:
        test, evaluated_on = samples("test"), f"test {unit}"
    else:
        test, val, evaluated_on = val, None, f"val {unit}"
    splits = DatasetSplits(root, classes, samples("train"), val, test, evaluated_on, notes)
    return cut_given_splits(splits, val_per_class, test_per_class, seed)


def cut_given_splits(splits: DatasetSplits, val_per_class: int | None, test_per_class: int | None,
                     seed: int) -> DatasetSplits:
    """A dataset's own test (and validation) split cut to the sizes asked for."""
    test, val, evaluated_on = splits.test, splits.val, splits.evaluated_on
    if test_per_class is not None:
        test = cut_per_class(test, test_per_class, seed)
        evaluated_on += f" ({test_per_class} per class, seed {seed})"
    if val is not None and val_per_class is not None:
        val = cut_per_class(val, val_per_class, seed)
    return replace(splits, test=test, val=val, evaluated_on=evaluated_on)


def split_by_ratios(root: Path, classes: list[str], samples: list[Sample], ratios: tuple[float, float, float],
                    seed: int, notes: list[str] | None = None, val_per_class: int | None = None,
                    test_per_class: int | None = None) -> DatasetSplits:
    """Stratified train/val/test splits of ``samples``: ``test_per_class`` / ``val_per_class`` images per class
    where given, else by ``ratios`` (val may be 0: carved when needed)."""
    train_ratio, val_ratio, test_ratio = ratios
    total = train_ratio + val_ratio + test_ratio
    if test_per_class is not None:
        test, rest = take_per_class(samples, test_per_class, seed, "test_per_class", classes)
        evaluated_on = f"test ({test_per_class} per class, seed {seed})"
    else:
        rest, test = stratified_split(samples, test_ratio / total, seed)
        evaluated_on = f"test ({test_ratio / total:.0%} stratified split, seed {seed})"
    if val_per_class is not None:
        val, train = take_per_class(rest, val_per_class, seed + 1, "val_per_class", classes)
    elif val_ratio > 0:
        train, val = stratified_split(rest, val_ratio / (train_ratio + val_ratio), seed)
    else:
        train, val = rest, None
    return DatasetSplits(root, classes, train, val, test, evaluated_on, notes or [])


def carve_validation(splits: DatasetSplits, ratios: tuple[float, float, float] = DEFAULT_RATIOS, seed: int = 0,
                     val_per_class: int | None = None, keep: list[Sample] | None = None) -> DatasetSplits:
    """Splits with a validation set: the given one, or one carved from the training pool (``val_per_class`` images
    per class, else the validation share of the ratios) around the training images ``keep`` (None: before any
    are chosen)."""
    if splits.val is not None:
        return splits
    train_ratio, val_ratio, _ = ratios
    kept = set(keep or [])
    pool = [s for s in splits.train if s not in kept]
    if val_per_class is not None:
        val, train = take_per_class(pool, val_per_class, seed + 1, "val_per_class", splits.classes)
    else:
        fraction = val_ratio / (train_ratio + val_ratio) if val_ratio > 0 else 0.15
        train, val = stratified_split(pool, fraction * len(splits.train) / len(pool), seed)
    note = f"validation: {len(val)} images carved from the training images (not counted in per_class)"
    return replace(splits, train=train if keep is None else keep, val=val, notes=[*splits.notes, note],
                   val_from_train=keep is None)


def _require_two_classes(classes: list[str], folder: Path, dropped: list[str] = ()) -> None:
    if len(classes) < 2:
        found = f" ({classes[0]})" if classes else ""
        unreadable = f"; left out for having no readable image: {', '.join(dropped)}" if dropped else ""
        raise UserError(f"{folder} needs at least two class folders with images, found {len(classes)}{found}"
                        f"{unreadable}")


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

    label_sets = splits.label_sets and splits.label_sets.pick([splits.classes.index(c) for c in keep])
    return replace(splits, classes=keep, train=pick(splits.train), val=pick(splits.val), test=pick(splits.test),
                   label_sets=label_sets)


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
    return replace(splits, train=sorted(kept, key=sample_order), notes=notes)


def load_dataset(
    data,
    *,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    per_class: int | None = None,
    val_per_class: int | None = None,
    test_per_class: int | None = None,
    validation: bool = False,
    folds: int | None = None,
    fold: int | None = None,
) -> DatasetSplits:
    """A dataset folder (or built-in name) read, split (or fold ``fold`` of ``folds``-fold cross-validation,
    see ``data.folds``), and cut down to the classes and sizes asked for.

    ``validation``: the method needs a validation set (fine-tuning, trained heads): one is carved from the
    training pool when the folder gives none, so that ``per_class`` stays the number of training images; with
    ``per_class`` they are the same training images a method without validation gets (the pool permitting).
    """
    splits = load_splits(data, ratios=ratios, seed=seed, val_per_class=val_per_class, test_per_class=test_per_class)
    splits = select_classes(splits, classes, num_classes)
    if folds is not None:
        from .folds import cross_validation_fold

        if fold is None:
            raise UserError(f"folds {folds} without a fold: run every fold with transferlab.crossval.run_folds "
                            f"(the command line's --folds), or one with fold=0..{folds - 1}")
        splits = cross_validation_fold(splits, folds, fold, seed)
    chosen = limit_per_class(splits, per_class, seed)
    if not validation or splits.val is not None:
        return chosen
    if per_class is None:
        return carve_validation(splits, ratios, seed, val_per_class)
    try:  # the training images every method gets, the validation set carved from the rest of the pool
        return carve_validation(replace(chosen, train=splits.train), ratios, seed, val_per_class, keep=chosen.train)
    except UserError:  # too few left beside them: carve first, train on what remains
        return limit_per_class(carve_validation(splits, ratios, seed, val_per_class), per_class, seed)
