"""A dataset listed in a CSV or TSV file: one image per row, with its label (and optionally its split).

The format, for ``--data list.csv``:

- the delimiter follows the suffix: ``.csv`` comma-separated, ``.tsv`` tab-separated;
- the first line is a header naming the columns, and is required: ``path`` and
  ``label``, and optionally ``split`` (``train``, ``val``/``validation``/``valid``,
  ``test``); no other column is accepted, so a typo is not silently ignored;
- multi-label data has a ``labels`` column in place of ``label``: several labels per
  image, ``;``-separated (``daffodil;yellow``); each distinct set of labels is a class
  of the splits, and ``DatasetSplits.label_sets`` says which labels it holds;
- a relative ``path`` is relative to the folder holding the list file, not to the
  current folder (the list can move with its images); blank rows are skipped;
- classes are the distinct labels, sorted. Without a ``split`` column the images are
  split by ``--split`` ratios and the seed, stratified, as a class-per-folder set.

A listed file that does not exist, a row with the wrong number of fields, an empty
label or an unknown split is one error naming the file and the line; so is an image
listed twice (through any path or link) or under two labels (a copy too), as in a
class-per-folder layout: either would let one image leak across the splits.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..pathkinds import wrong_kind
from .builtin import LIST_SUFFIXES
from .labelsets import SEPARATOR, LabelSets, label_set_name

REQUIRED_COLUMNS = ("path", "label")
COLUMNS = (*REQUIRED_COLUMNS, "labels", "split")


@dataclass(frozen=True)
class ListedImage:
    path: Path
    label: str  # a ``labels`` column's set of labels: sorted, ``;``-joined (``labelsets.label_set_name``)
    split: str | None  # "train", "val" or "test"; None without a split column
    line: int
    multi_label: bool = False  # listed in a ``labels`` column


def is_list_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def _rows(list_file: Path, text: str, delimiter: str) -> Iterator[list[str]]:
    """The csv module's rows, its own limits (a field over ``csv.field_size_limit()``, a NUL byte...) an error
    naming the line."""
    lines = text.splitlines()
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "field larger than field limit" in reason:
                reason = f"a field longer than {csv.field_size_limit():,} characters"
            raise UserError(f"{list_file}:{reader.line_num}: cannot read this line: {reason}") from None
        yield row


def read_list(list_file: Path) -> list[ListedImage]:
    """The rows of a list file, checked: every listed image exists, every label is given."""
    from .layout import SPLIT_NAMES

    delimiter = LIST_SUFFIXES.get(list_file.suffix.lower())
    if delimiter is None:
        raise UserError(f"{list_file}: a list of images must be a .csv or .tsv file")
    base = list_file.parent
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{list_file}: not a UTF-8 text file") from None
    except OSError as exc:
        raise UserError(f"cannot read {list_file}: {exc.strerror or exc}") from None
    rows = _rows(list_file, text, delimiter)
    header = next(rows, None)
    if header is None:
        raise UserError(f"{list_file}: empty; the first line must name the columns: path{delimiter}label")
    columns = [name.strip().lower() for name in header]
    for name in columns:
        if name not in COLUMNS:
            raise UserError(f"{list_file}:1: unknown column {name!r}: the columns are path, label (or labels, "
                            "several per image) and optionally split (the first line is a header)")
    if len(set(columns)) != len(columns):
        raise UserError(f"{list_file}:1: a column is named twice")
    if "label" in columns and "labels" in columns:
        raise UserError(f"{list_file}:1: both a label and a labels column: use label (one per image) or labels "
                        f"(several per image, {SEPARATOR}-separated), not both")
    multi_label = "labels" in columns
    if multi_label:
        columns = ["label" if name == "labels" else name for name in columns]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise UserError(f"{list_file}:1: no {missing[0]!r} column: the first line must name the columns "
                        f"path{delimiter}label")
    listed: list[ListedImage] = []
    for line, row in enumerate(rows, start=2):
        if not any(field.strip() for field in row):
            continue
        where = f"{list_file}:{line}"
        if len(row) != len(columns):
            raise UserError(f"{where}: {len(row)} fields where the header has {len(columns)}")
        values = dict(zip(columns, (field.strip() for field in row)))
        if not values["path"]:
            raise UserError(f"{where}: empty path")
        if multi_label:
            values["label"] = label_set_name([label.strip() for label in values["label"].split(SEPARATOR)
                                              if label.strip()])
            if not values["label"]:
                raise UserError(f"{where}: empty labels")
        if not values["label"]:
            raise UserError(f"{where}: empty label")
        path = Path(values["path"]).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise UserError(f"{where}: {wrong_kind(path, 'image', 'an image file')}")
        split = None
        if "split" in values:
            split = SPLIT_NAMES.get(values["split"].lower())
            if split is None:
                raise UserError(f"{where}: unknown split {values['split']!r}: use train, val or test")
        listed.append(ListedImage(path, values["label"], split, line, multi_label))
    if not listed:
        raise UserError(f"{list_file}: lists no images")
    _check_each_image_once(list_file, listed)
    return listed


def _check_each_image_once(list_file: Path, listed: list[ListedImage]) -> None:
    """No image listed twice (it could land in train and test) nor under two labels, as in a class-per-folder
    layout: the same file through another path or a link, or a copy under another label, is an error."""
    from .layout import file_identity, find_shared_image

    seen: dict[tuple[int, int], ListedImage] = {}
    for item in listed:
        earlier = seen.setdefault(file_identity(item.path), item)
        if earlier is not item:
            where = f"{list_file}:{item.line}"
            if earlier.label != item.label:
                raise UserError(f"{where}: the same image is in two classes: {earlier.path} ({earlier.label}, "
                                f"line {earlier.line}) and {item.path} ({item.label})")
            raise UserError(f"{where}: the same image is listed twice: {earlier.path} (line {earlier.line}) "
                            f"and {item.path}")
    by_label: dict[str, list[Path]] = {}
    for item in listed:
        by_label.setdefault(item.label, []).append(item.path)
    shared = find_shared_image(by_label)
    if shared is not None:
        first, second = (next(item for item in listed if item.path == path) for path in shared)
        raise UserError(f"{list_file}:{second.line}: the same image is in two classes: {first.path} ({first.label}, "
                        f"line {first.line}) and {second.path} ({second.label})")


def read_list_splits(list_file: Path, ratios: tuple[float, float, float], seed: int):
    """The ``DatasetSplits`` of a list file: its own splits if it has a split column, else split by ``ratios``."""
    listed = read_list(list_file)
    classes = sorted({item.label for item in listed})
    if len(classes) < 2:
        raise UserError(f"{list_file} needs at least two labels, found {len(classes)} ({classes[0]})")
    label_sets = LabelSets.of_classes(classes) if listed[0].multi_label else None
    return replace(_splits(list_file, listed, classes, ratios, seed), label_sets=label_sets)


def _splits(list_file: Path, listed: list[ListedImage], classes: list[str], ratios: tuple[float, float, float],
            seed: int):
    from .layout import DatasetSplits, Sample, split_by_ratios

    if listed[0].split is None:
        samples = [Sample(item.path, classes.index(item.label)) for item in listed]
        return split_by_ratios(list_file, classes, samples, ratios, seed)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for item in listed:
        parts[item.split].append(Sample(item.path, classes.index(item.label)))  # type: ignore[index]
    if not parts["train"] or not (parts["val"] or parts["test"]):
        raise UserError(f"{list_file}: a split column needs train rows and val or test rows")
    if parts["test"]:
        return DatasetSplits(list_file, classes, parts["train"], parts["val"] or None, parts["test"], "test rows")
    return DatasetSplits(list_file, classes, parts["train"], None, parts["val"], "val rows")
