"""CIFAR-10 and CIFAR-100 in their *binary* distribution, read as raw bytes.

The binary version (``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``) is a few
files of fixed-size records: label byte(s) then 3072 pixel bytes, a 32 x 32 image
stored channel-planar (1024 red, 1024 green, 1024 blue). It is read here with
``numpy.fromfile`` and nothing else. The Python version holds pickles, which can run
code when loaded: it is refused, never unpickled.

- ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train),
  ``test_batch.bin`` (test), ``batches.meta.txt`` (the 10 class names); a record is
  1 label byte + 3072 pixel bytes.
- ``cifar-100-binary/``: ``train.bin``, ``test.bin``, ``fine_label_names.txt`` (and
  ``coarse_label_names.txt``); a record is a coarse and a fine label byte + 3072
  pixel bytes. The 100 fine labels are the classes.

The usual split: the training files are train (a validation split is carved from them
when a run needs one), the test file is what results are reported on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .memory import MemoryImage

SIDE = 32
PIXEL_BYTES = 3 * SIDE * SIDE


@dataclass(frozen=True)
class CifarLayout:
    name: str
    train: tuple[str, ...]
    test: str
    class_names: str  # the text file of class names, one a line
    label_bytes: int  # bytes before the pixels in a record
    label_byte: int  # which of them is the label used

    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.class_names)


CIFAR10 = CifarLayout("CIFAR-10", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin",
                      "batches.meta.txt", label_bytes=1, label_byte=0)
CIFAR100 = CifarLayout("CIFAR-100", ("train.bin",), "test.bin", "fine_label_names.txt", label_bytes=2, label_byte=1)
LAYOUTS = (CIFAR10, CIFAR100)

# Files that mark the Python (pickled) distributions: cifar-10-batches-py/, cifar-100-python/
PYTHON_MARKERS = (("batches.meta", "data_batch_1"), ("meta", "train", "test"))


def binary_layout(root: Path) -> CifarLayout | None:
    """The CIFAR binary layout of folder ``root`` (recognised by its class-names file), or None."""
    for layout in LAYOUTS:
        batches = (*layout.train, layout.test)
        if (root / layout.class_names).is_file() and any((root / name).is_file() for name in batches):
            missing = [name for name in layout.files() if not (root / name).is_file()]
            if missing:
                raise UserError(f"{root} looks like the {layout.name} binary version but has no {missing[0]}")
            return layout
    return None


def refuse_python_version(root: Path) -> None:
    """One clear line for the Python (pickled) CIFAR distribution, which is never unpickled."""
    for markers in PYTHON_MARKERS:
        if all((root / name).is_file() for name in markers):
            raise UserError(f"{root} is the Python version of CIFAR (pickled files, which transferlab does not load): "
                            "use the binary version instead (cifar-10-binary.tar.gz -> cifar-10-batches-bin/, "
                            "cifar-100-binary.tar.gz -> cifar-100-binary/)")


def read_class_names(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [n for n in names if n]
    if len(names) < 2 or len(set(names)) != len(names):
        raise UserError(f"{path}: needs at least two different class names, one a line")
    return names


def read_records(path: Path, layout: CifarLayout, classes: int) -> list[tuple[MemoryImage, int]]:
    """(image, label) of every record of one binary batch file."""
    record = layout.label_bytes + PIXEL_BYTES
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % record:
        raise UserError(f"{path} is not a {layout.name} binary batch: {data.size} bytes is not a whole number of "
                        f"{record}-byte records")
    records = data.reshape(-1, record)
    labels = records[:, layout.label_byte].astype(np.int64)
    bad = np.flatnonzero(labels >= classes)
    if bad.size:
        raise UserError(f"{path}: record {int(bad[0])} has label {int(labels[bad[0]])}, "
                        f"but there are {classes} classes")
    pixels = records[:, layout.label_bytes:]
    return [(MemoryImage(path, i, SIDE, SIDE, pixels[i].tobytes()), int(labels[i])) for i in range(len(records))]


def read_cifar_splits(root: Path, layout: CifarLayout):
    """The ``DatasetSplits`` of a CIFAR binary folder: train from the training files, test from the test file."""
    from .layout import DatasetSplits, Sample

    classes = read_class_names(root / layout.class_names)

    def samples(name: str) -> list[Sample]:
        return [Sample(image, label) for image, label in read_records(root / name, layout, len(classes))]

    train = [s for name in layout.train for s in samples(name)]
    test = samples(layout.test)
    return DatasetSplits(root, classes, train, None, test, f"{layout.test} ({layout.name} test set)")


def read_record(path: Path, index: int) -> MemoryImage | None:
    """Record ``index`` of a CIFAR binary batch file, read alone (a stored prediction names it ``file#index``); None
    when ``path`` is not a batch file of a CIFAR folder or has no such record."""
    try:
        layout = binary_layout(path.parent)
    except (UserError, OSError):
        return None
    if layout is None or path.name not in (*layout.train, layout.test) or index < 0:
        return None
    record = layout.label_bytes + PIXEL_BYTES
    try:
        pixels = np.fromfile(path, dtype=np.uint8, count=PIXEL_BYTES, offset=index * record + layout.label_bytes)
    except (OSError, ValueError):
        return None
    return MemoryImage(path, index, SIDE, SIDE, pixels.tobytes()) if pixels.size == PIXEL_BYTES else None
