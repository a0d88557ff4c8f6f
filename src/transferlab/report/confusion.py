"""A run's confusion matrix as a heat map with counts."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from .plots import new_figure


def text_colour(background) -> str:
    """Black or white, whichever reads on ``background`` (an RGBA tuple): by its relative luminance."""
    r, g, b = background[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def confusion_figure(matrix: list[list[int]], classes: list[str], title: str):
    cells = np.asarray(matrix)
    n = len(classes)
    size = min(3.0 + 0.38 * n, 11.0)
    figure, axes = new_figure(size, size * 0.9)
    ax = axes[0][0]
    colours = colormaps["Blues"]
    high = max(int(cells.max()) if cells.size else 0, 1)
    ax.imshow(cells, cmap=colours, vmin=0, vmax=high)  # scaled from 0, so the smallest count is not drawn white
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7 if n > 10 else 9)
    ax.set_yticks(range(n), classes, fontsize=7 if n > 10 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(n):
        for j in range(n):
            if cells[i, j]:
                ax.text(j, i, str(cells[i, j]), ha="center", va="center", fontsize=6 if n > 10 else 8,
                        color=text_colour(colours(cells[i, j] / high)))
    return figure
