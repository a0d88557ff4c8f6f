"""The reliability diagram: per confidence bin, how often the top label was right (Guo et al. 2017, figure 1).

A calibrated model's bars sit on the diagonal; bars below it are overconfidence. The bins are
the run's own (``RunResult.reliability``, 15 equal-width bins of the top label's probability).
"""

from __future__ import annotations

import numpy as np

from ..calibration import ece_of_reliability
from .plots import new_figure


def reliability_figure(table: dict, title: str):
    """Bars of accuracy per bin beside the diagonal, with each bin's image count shaded by its share."""
    figure, axes = new_figure(4.5, 4.2)
    ax = axes[0][0]
    count = np.asarray(table["count"], dtype=float)
    bins = len(count)
    edges = np.linspace(0.0, 1.0, bins + 1)
    filled = count > 0
    ax.bar(edges[:-1][filled], np.asarray(table["accuracy"])[filled], width=1.0 / bins, align="edge",
           edgecolor="black", color="tab:blue", label="accuracy")
    gap_low = np.minimum(table["accuracy"], table["confidence"])
    gap = np.abs(np.asarray(table["accuracy"]) - np.asarray(table["confidence"]))
    ax.bar(edges[:-1][filled], gap[filled], bottom=np.asarray(gap_low)[filled], width=1.0 / bins, align="edge",
           color="tab:red", alpha=0.3, hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label's probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {ece_of_reliability(table):.3f} over {int(count.sum())} test images", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    return figure
