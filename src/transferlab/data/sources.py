"""Datasets that are not class folders: which reader a ``--data`` path goes to.

A .csv/.tsv file is a list of images (``listfile``); a folder of CIFAR binary batches
is read as raw records (``cifar``), the Python CIFAR version is refused; tar shards
(``shards``: a brace pattern, a .tar, a folder of .tar files) and ``hf:PATH`` (``hfdata``)
are indexed, their images read where they are packed; anything else is a folder of
class folders (``layout``).
"""

from __future__ import annotations

from pathlib import Path

from .cifar import binary_layout, read_cifar_splits, refuse_python_version
from .listfile import is_list_file, read_list, read_list_splits
from .packed import check_packed, is_packed  # noqa: F401 (the readers' entry points, here with the others)


def read_packed(data, ratios: tuple[float, float, float], seed: int, val_per_class: int | None,
                test_per_class: int | None):
    """The ``DatasetSplits`` of tar shards or an ``hf:`` dataset; None for other data."""
    from .hfdata import is_hf_spec, read_hf_splits
    from .shards import is_shard_spec, read_shard_splits

    if is_hf_spec(data):
        return read_hf_splits(data, ratios, seed, val_per_class, test_per_class)
    if is_shard_spec(data):
        return read_shard_splits(data, ratios, seed, val_per_class, test_per_class)
    return None


def packed_files(data) -> list[tuple[str, Path]] | None:
    """(name, path) of the files tar shards or an ``hf:`` dataset are read from, for the data's fingerprint; None
    for other data."""
    from .hfdata import hf_path, is_hf_spec
    from .shards import is_shard_spec, shard_files

    if is_hf_spec(data):
        path = hf_path(data)
        if path.is_file():
            return [(path.name, path)]
        return sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*")
                      if p.is_file() and not p.name.startswith("."))
    if is_shard_spec(data):
        return [(_relative(p, Path.cwd()), p) for p in shard_files(data)]
    return None


def read_source(root: Path, ratios: tuple[float, float, float], seed: int):
    """The ``DatasetSplits`` of a list file or a CIFAR binary folder; None for a folder of class folders."""
    if is_list_file(root):
        return read_list_splits(root, ratios, seed)
    if not root.is_dir():
        return None
    layout = binary_layout(root)
    if layout is not None:
        return read_cifar_splits(root, layout)
    refuse_python_version(root)
    return None


def source_files(root: Path) -> list[tuple[str, Path]] | None:
    """(name, path) of every file a list file or a CIFAR folder reads, for the data's fingerprint; None for a folder
    of class folders (its files are found by walking it)."""
    if is_list_file(root):
        listed = sorted({item.path for item in read_list(root)})
        return [(root.name, root)] + [(_relative(path, root.parent), path) for path in listed]
    if root.is_dir():
        layout = binary_layout(root)
        if layout is not None:
            return [(name, root / name) for name in sorted(layout.files())]
        refuse_python_version(root)
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()
