"""Hugging Face ``datasets`` as a dataset: ``--data hf:PATH``, saved with ``save_to_disk`` or as parquet.

PATH is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, a ``.parquet``
file, or a folder of them (``train-00000-of-00002.parquet``... as on the Hub). Splits are given as a
folder's train/ val/ test/ are: a DatasetDict's ``train`` with ``validation`` (``val``) and/or
``test``, parquet files named ``train-*`` with ``val-*`` / ``test-*``; a single dataset (or
unnamed parquet files) is one pool, split by the ratios and the seed.

Columns: the image column has the ``Image`` feature (else it is named ``image`` or ``img``); the
label column has the ``ClassLabel`` feature, whose names become the class names (else it is named
``label``, ``labels`` or ``class`` and holds names or numbers). Classes are sorted by name, as class
folders are. Rows stay in the memory-mapped Arrow files: each image is an ``HFImage`` (dataset,
row) read when it is decoded; parquet is converted once into Arrow in transferlab's cache.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserError
from ..pathkinds import wrong_kind
from .packed import PackedImage

log = logging.getLogger(__name__)

PREFIX = "hf:"
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels", "class")
INSTALL = "Hugging Face datasets need the 'hf' extra: pip install 'transferlab[hf]'"


@dataclass(frozen=True)
class HFImage(PackedImage):
    """The image of row ``row`` of a saved dataset (``source``: its folder, or its parquet files; ``split``: the
    DatasetDict split)."""

    source: tuple[str, ...]
    split: str | None
    column: str
    row: int
    stored_name: str  # the file name the dataset stored with the image, else the row number

    def read_bytes(self) -> bytes:
        cell = _rows(self.source, self.split)[self.row][self.column][0].as_py()
        if isinstance(cell, dict):
            if cell.get("bytes") is not None:
                return cell["bytes"]
            if cell.get("path"):
                return Path(cell["path"]).read_bytes()
            raise OSError(f"{self}: the row holds no image")
        if isinstance(cell, bytes):
            return cell
        if isinstance(cell, str):
            return Path(cell).read_bytes()
        raise OSError(f"{self}: the row holds no image")

    @property
    def sort_name(self) -> str:
        return self.stored_name

    def __str__(self) -> str:
        where = self.source[0] if len(self.source) == 1 else f"{self.source[0]} (+{len(self.source) - 1})"
        return f"{where}{'/' + self.split if self.split else ''}#{self.row}"


def is_hf_spec(data) -> bool:
    return str(data).startswith(PREFIX)


def hf_path(data) -> Path:
    """The dataset's path in ``hf:PATH``, checked to exist and the extra installed (cheap: before torch loads)."""
    if importlib.util.find_spec("datasets") is None:
        raise UserError(INSTALL)
    path = Path(str(data)[len(PREFIX):]).expanduser()
    if not str(data)[len(PREFIX):]:
        raise UserError("hf: needs a path: hf:FOLDER (saved with save_to_disk) or hf:FILE.parquet")
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".parquet")):
        raise wrong_kind(path, "dataset", "a folder saved by save_to_disk, a .parquet file or a folder of them")
    return path


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


@lru_cache(maxsize=8)
def _dataset(source: tuple[str, ...], split: str | None):
    """The dataset (memory-mapped), opened once per process."""
    datasets = _quiet_datasets()
    if len(source) == 1 and Path(source[0]).is_dir():
        loaded = datasets.load_from_disk(source[0])
        return loaded[split] if split is not None else loaded
    from ..storage import cache_root

    return datasets.Dataset.from_parquet(list(source), cache_dir=str(cache_root() / "hf-datasets"))


@lru_cache(maxsize=8)
def _rows(source: tuple[str, ...], split: str | None):
    """Rows as Arrow tables (nothing decoded)."""
    return _dataset(source, split).with_format("arrow")


def _sources(path: Path) -> dict[str | None, tuple[tuple[str, ...], str | None]]:
    """Split role (None: no role) -> (source, DatasetDict split) of the dataset at ``path``."""
    from .layout import SPLIT_NAMES
    from .shards import shard_role

    if path.is_dir() and not any(path.rglob("*.parquet")):
        datasets = _quiet_datasets()
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise UserError(f"{path} is not a dataset saved with save_to_disk nor a folder of parquet files "
                            f"({exc})") from None
        if isinstance(loaded, datasets.DatasetDict):
            found = {}
            for name in loaded:
                role = SPLIT_NAMES.get(name.lower())
                if role is None or role in found:
                    log.warning("%s: split %r is not train, validation or test: left out", path, name)
                    continue
                found[role] = ((str(path),), name)
            return found
        return {None: ((str(path),), None)}
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    grouped: dict[str | None, list[str]] = {}
    for file in files:
        grouped.setdefault(shard_role(file), []).append(str(file))
    return {role: (tuple(names), None) for role, names in grouped.items()}


def _columns(dataset, where: str) -> tuple[str, str, list[str] | None]:
    """(image column, label column, ClassLabel names or None)."""
    datasets = _quiet_datasets()
    features = dataset.features
    image = next((n for n, f in features.items() if isinstance(f, datasets.Image)), None)
    image = image or next((n for n in IMAGE_COLUMNS if n in features), None)
    if image is None:
        raise UserError(f"{where}: no image column (an Image feature, or a column named image or img); the "
                        f"columns are {', '.join(features)}")
    label = next((n for n, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    names = features[label].names if label else None
    label = label or next((n for n in LABEL_COLUMNS if n in features), None)
    if label is None:
        raise UserError(f"{where}: no label column (a ClassLabel feature, or a column named label, labels or "
                        f"class); the columns are {', '.join(features)}")
    return image, label, names


def _stored_names(column) -> list[str | None]:
    """The file names stored with the images (an Image column's ``path`` field), chunk by chunk: the bytes are
    not copied."""
    names: list[str | None] = []
    for chunk in getattr(column, "chunks", [column]):
        if hasattr(chunk.type, "get_field_index") and chunk.type.get_field_index("path") >= 0:
            names.extend(chunk.field("path").to_pylist())
        else:
            names.extend([None] * len(chunk))
    return names


def index_dataset(source: tuple[str, ...], split: str | None) -> list[tuple[str, HFImage]]:
    """(class name, image) of every row of one dataset split."""
    where = f"{source[0]}{'/' + split if split else ''}"
    try:
        dataset = _dataset(source, split)
    except Exception as exc:  # datasets raises many kinds for a damaged file
        raise UserError(f"cannot read the dataset {where}: {type(exc).__name__}: {exc}") from None
    image, label, names = _columns(dataset, where)
    rows = _rows(source, split)
    labels = rows[label].to_pylist()
    stored = _stored_names(rows[image])
    samples = []
    for row, (value, name) in enumerate(zip(labels, stored)):
        if value is None or value == "" or (names is not None and not 0 <= value < len(names)):
            raise UserError(f"{where}: row {row} has no label ({label} = {value!r})")
        class_name = names[value] if names is not None else str(value).strip()
        samples.append((class_name, HFImage(source, split, image, row, name or f"{row:09d}")))
    return samples


def read_hf_splits(spec, ratios: tuple[float, float, float], seed: int, val_per_class: int | None,
                   test_per_class: int | None):
    """The ``DatasetSplits`` of ``hf:PATH``: its own splits when it has them, else split by ratios."""
    from .layout import named_splits

    path = hf_path(spec)
    sources = _sources(path)
    given = {role for role in sources if role}
    split = "train" in given and len(given) > 1
    parts: dict[str, list] = {}
    for role, (source, name) in sources.items():
        if split and role is None:
            raise UserError(f"{source[0]} belongs to no split: name it train-*, validation-* or test-*")
        parts.setdefault(role if split else "train", []).extend(index_dataset(source, name))
    if not parts:
        raise UserError(f"{path} holds no dataset")
    return named_splits(Path(str(spec)), parts, "split", ratios, seed, val_per_class, test_per_class)
