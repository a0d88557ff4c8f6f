"""Samples of the dataset: a few images of every class, the figure a lab report opens with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import new_figure

PER_CLASS = 6
MAX_CLASSES = 12
CELL = 1.3  # inches per thumbnail


def dataset_samples(data: str | Path, per_class: int = PER_CLASS) -> tuple[list[str], dict[str, list[Path]]]:
    """(every class name, the first ``per_class`` images of each of the first ``MAX_CLASSES`` classes).

    A folder with given splits shows its training split (else the first split it has).
    """
    from ..data.builtin import resolve_data_path
    from ..data.layout import find_splits, read_class_folders

    root = resolve_data_path(data)
    splits = find_splits(root)
    folder = splits.get("train") or next(iter(splits.values()), root)
    names, samples = read_class_folders(folder)
    shown: dict[str, list[Path]] = {name: [] for name in names[:MAX_CLASSES]}
    for sample in samples:
        name = names[sample.label]
        if name in shown and len(shown[name]) < per_class:
            shown[name].append(Path(sample.path))
    return names, shown


def samples_figure(shown: dict[str, list[Path]]):
    """One row per class, its images side by side, each enlarged or shrunk to the same cell."""
    from ..data import UnreadableImage, open_rgb

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
                    ax.imshow(np.asarray(open_rgb(paths[col])), interpolation="nearest")
                except (UnreadableImage, OSError):
                    ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7)
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return figure
