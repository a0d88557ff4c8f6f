"""Samples of the dataset: a few images of every class the study uses, the figure a lab report opens with.

Drawn from any data source a run reads: a folder of class folders (its training split
when it has given splits), a CSV/TSV list of images, or a CIFAR binary folder (pictures
drawn from the records' pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pictures import Picture
from .plots import new_figure

PER_CLASS = 6
MAX_CLASSES = 12
CELL = 1.3  # inches per thumbnail


def dataset_samples(data: str | Path, classes: list[str] | None = None,
                    per_class: int = PER_CLASS) -> tuple[list[str], dict[str, list[Picture]]]:
    """(the classes sampled from: ``classes`` when given (those the data has), in the dataset's order, else all of
    them; the first ``per_class`` images of each of the first ``MAX_CLASSES`` of those).

    A folder with given splits shows its training split (else the first split it has).
    """
    names, labelled = _labelled_images(data)
    wanted = [name for name in names if classes is None or name in classes] or names  # none known: the data changed
    shown: dict[str, list[Picture]] = {name: [] for name in wanted[:MAX_CLASSES]}
    for image, name in labelled:
        if name in shown and len(shown[name]) < per_class:
            shown[name].append(image)
    return wanted, shown


def _labelled_images(data: str | Path) -> tuple[list[str], list[tuple[Picture, str]]]:
    """(class names, (image, class name) pairs in the source's order) of a folder, list file or CIFAR folder."""
    from ..data.builtin import resolve_data_path
    from ..data.cifar import binary_layout, read_class_names, read_records
    from ..data.layout import find_splits, read_class_folders
    from ..data.listfile import is_list_file, read_list

    root = resolve_data_path(data)
    if is_list_file(root):
        listed = read_list(root)
        train = [item for item in listed if item.split in (None, "train")] or listed
        return sorted({item.label for item in listed}), [(item.path, item.label) for item in train]
    layout = binary_layout(root) if root.is_dir() else None
    if layout is not None:
        names = read_class_names(root / layout.class_names)
        return names, [(image, names[label]) for image, label in read_records(root / layout.train[0], layout,
                                                                              len(names))]
    splits = find_splits(root)
    folder = splits.get("train") or next(iter(splits.values()), root)
    names, samples = read_class_folders(folder)
    return names, [(Path(sample.path), names[sample.label]) for sample in samples]


def samples_figure(shown: dict[str, list[Picture]]):
    """One row per class, its images side by side, each enlarged or shrunk to the same cell."""
    from ..data import UnreadableImage
    from .pictures import picture_rgb

    rows, cols = len(shown), max((len(paths) for paths in shown.values()), default=1)
    figure, axes = new_figure(CELL * cols + 1.2, CELL * rows, ncols=cols, nrows=rows)
    for row, (name, paths) in enumerate(shown.items()):
        for col in range(cols):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(paths):
                try:
                    ax.imshow(np.asarray(picture_rgb(paths[col])), interpolation="nearest")
                except (UnreadableImage, OSError):
                    ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7)
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return figure
