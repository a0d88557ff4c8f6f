"""A run's confusion matrix as a heat map with counts."""

from __future__ import annotations

import numpy as np

from .plots import new_figure


def confusion_figure(matrix: list[list[int]], classes: list[str], title: str):
    cells = np.asarray(matrix)
    n = len(classes)
    size = min(3.0 + 0.38 * n, 11.0)
    figure, axes = new_figure(size, size * 0.9)
    ax = axes[0][0]
    ax.imshow(cells, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7 if n > 10 else 9)
    ax.set_yticks(range(n), classes, fontsize=7 if n > 10 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    high = cells.max() if cells.size else 0
    for i in range(n):
        for j in range(n):
            if cells[i, j]:
                ax.text(j, i, str(cells[i, j]), ha="center", va="center", fontsize=6 if n > 10 else 8,
                        color="white" if cells[i, j] > high / 2 else "black")
    return figure
