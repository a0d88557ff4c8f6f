"""Line plots: learning curves, accuracy against a swept axis, accuracy against temperature."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..finetune.result import FinetuneResult
from ..probing.result import ProbeResult
from ..study.axes import axis_text
from .plots import new_figure
from .records import RunRecord
from .noise import row_interval
from .tables import group_by_setting


def learning_curves(record: RunRecord):
    """Loss and accuracy per epoch (train and validation); a dashed line where stage 2 starts."""
    history = record.result.history if record.result is not None else []
    if not history:
        return None
    figure, axes = new_figure(10, 3.6, ncols=2)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for ax, metric in zip(axes[0], ("loss", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{metric}"
            if any(key in h for h in history):
                ax.plot(epochs, [h.get(key, np.nan) for h in history], style, marker="." if len(history) <= 40 else None,
                        label=f"{split} {metric}")
        stage2 = record.result.stage2_start_epoch if isinstance(record.result, FinetuneResult) else None
        if stage2:
            ax.axvline(stage2 - 0.5, color="grey", linestyle=":", label="stage 2 starts")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        integer_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    figure.suptitle(record.label(), fontsize=10)
    return figure


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")


def series_style(index: int) -> dict:
    """Matplotlib keywords that set series ``index`` apart from the others: its own marker and line style, every
    other one hollow and a size smaller, so a series drawn over an identical one leaves it visible."""
    return {"marker": MARKERS[index % len(MARKERS)], "linestyle": LINESTYLES[(index // len(MARKERS)) % len(LINESTYLES)],
            "markersize": 7 - 2 * (index % 2), "fillstyle": "none" if index % 2 else "full"}


def integer_ticks(ax, axis: str = "x") -> None:
    """Whole-number ticks only: epochs, class counts and images per class have no fractions."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def outside_legend(ax) -> None:
    """The legend to the right of the plot, never over the data, however many lines there are."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def overlaid_axes(records: list[RunRecord]) -> list[str]:
    """Axes along which runs with per-epoch histories differ: their validation curves can share a plot."""
    with_history = [r for r in records if r.done and r.result.history]
    return [a for a in swept_axes(with_history) + ["temperature"] if _overlaid_groups(with_history, a)]


def _overlaid_groups(records: list[RunRecord], axis: str) -> dict[tuple, dict]:
    """Runs with histories that differ only in ``axis`` (lowest seed): {(method, backbone, rest): {value: run}}."""
    groups: dict[tuple, dict] = defaultdict(dict)
    for r in sorted(records, key=lambda r: r.seed):
        if not (r.done and r.result.history) or axis not in r.axes:
            continue
        key = (r.method, r.backbone, r.setting(axis))
        groups[key].setdefault(axis_text(r.axes[axis]), r)
    return {k: v for k, v in groups.items() if len(v) > 1}


def overlaid_curves(records: list[RunRecord], axis: str, metric: str = "val_accuracy") -> list:
    """One figure per group of runs that differ only in ``axis``: ``metric`` per epoch, a line per value."""
    figures = []
    for (method, backbone, rest), runs in sorted(_overlaid_groups(records, axis).items(), key=lambda kv: str(kv[0])):
        figure, axes = new_figure(7, 3.8)
        ax = axes[0][0]
        for index, (value, r) in enumerate(sorted(runs.items(), key=lambda kv: _sort_key(kv[1].axes.get(axis)))):
            history = r.result.history
            style = series_style(index)
            if len(history) > 40:
                style.update(markevery=max(1, len(history) // 20))
            ax.plot([h.get("epoch", i + 1) for i, h in enumerate(history)], [h.get(metric, np.nan) for h in history],
                    label=f"{axis}={value}", **style)
        ax.set_xlabel("epoch")
        integer_ticks(ax)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{_label(method, backbone, rest)}: {metric.replace('_', ' ')} by {axis}", fontsize=9)
        ax.grid(alpha=0.3)
        outside_legend(ax)
        figures.append(figure)
    return figures


def swept_axes(records: list[RunRecord]) -> list[str]:
    """Axes (other than seed, fold and temperature) the study swept: along which some method and backbone, its
    other values fixed, has finished runs at two values or more. Two methods that each set one value of an axis
    did not sweep it: a plot against it would be single points."""
    values: dict[str, dict[tuple, set]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        if r.done:
            for k, v in r.axes.items():
                values[k][(r.method, r.backbone, r.setting(k))].add(axis_text(v))
    return [k for k, lines in values.items() if k not in ("seed", "fold", "temperature")
            and any(len(v) > 1 for v in lines.values())]


def _label(method: str, backbone: str, setting: tuple) -> str:
    """``method / backbone k=v ...`` (the setting's values are already in their text or scalar form)."""
    return f"{method} / {backbone}" + (" " + " ".join(f"{k}={v}" for k, v in setting) if setting else "")


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _lines_along(records: list[RunRecord], axis: str) -> dict[tuple, dict]:
    """{(method, backbone, the other swept values): {value of ``axis``: the runs (seeds, folds) there}}."""
    lines: dict[tuple, dict] = defaultdict(dict)
    for (method, backbone, setting), group in group_by_setting(records).items():
        value = dict(setting).get(axis)
        if value is not None:
            lines[(method, backbone, tuple(kv for kv in setting if kv[0] != axis))][value] = group
    return lines


def _positions(lines: dict[tuple, dict]) -> tuple[list, bool, dict]:
    """(every value in order, whether they are numbers, each value's x position: itself, or its rank)."""
    every = sorted({v for points in lines.values() for v in points}, key=_sort_key)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in every)
    return every, numeric, {v: (v if numeric else i) for i, v in enumerate(every)}


def accuracy_vs_axis(records: list[RunRecord], axis: str):
    """Test accuracy (mean over seeds and folds) against ``axis``, with 95% interval bars (``noise.row_interval``:
    Wilson for one run, the t-interval of the mean for several): one line per method/backbone/other setting."""
    lines = _lines_along(records, axis)
    if not lines:
        return None
    figure, axes = new_figure(7, 4.2)
    ax = axes[0][0]
    every, numeric, position = _positions(lines)
    for index, ((method, backbone, rest), points) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        xs = sorted(points, key=_sort_key)
        means = [float(np.mean([r.accuracy for r in points[x]])) for x in xs]
        bounds = [row_interval(points[x])[:2] for x in xs]
        below = [max(0.0, m - low) if np.isfinite(low) else 0.0 for m, (low, _) in zip(means, bounds)]
        above = [max(0.0, high - m) if np.isfinite(high) else 0.0 for m, (_, high) in zip(means, bounds)]
        label = _label(method, backbone, rest)
        ax.errorbar([position[x] for x in xs], means, yerr=[below, above], capsize=3, label=label,
                    **series_style(index))
    _axis_frame(ax, axis, every, numeric, "test accuracy", f"accuracy vs {axis.replace('_', ' ')}")
    return figure


def train_accuracy_vs_axis(records: list[RunRecord], axis: str):
    """Final training accuracy (solid) beside test accuracy (dashed) against ``axis``, mean ± std over seeds and
    folds: how the gap between fitting and generalising changes with, e.g., the training images per class."""
    lines = _lines_along([r for r in records if r.result.train_accuracy_final is not None], axis)
    if not lines:
        return None
    figure, axes = new_figure(7, 4.2)
    ax = axes[0][0]
    every, numeric, position = _positions(lines)
    for index, ((method, backbone, rest), points) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        xs = sorted(points, key=_sort_key)
        label = _label(method, backbone, rest)
        marker = series_style(index)
        for name, value_of, linestyle in (("train", lambda r: r.result.train_accuracy_final, "-"),
                                          ("test", lambda r: r.accuracy, "--")):
            values = [[value_of(r) for r in points[x]] for x in xs]
            means = [float(np.mean(v)) for v in values]
            stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in values]
            line = ax.errorbar([position[x] for x in xs], means, yerr=stds, capsize=3, label=f"{label}: {name}",
                               **{**marker, "linestyle": linestyle})
            if name == "train":
                colour = line[0].get_color()
            else:
                for artist in (line[0], *line[1], *line[2]):
                    artist.set_color(colour)
    _axis_frame(ax, axis, every, numeric, "accuracy", f"final training and test accuracy vs {axis.replace('_', ' ')}")
    return figure


def _axis_frame(ax, axis: str, every: list, numeric: bool, ylabel: str, title: str) -> None:
    """The x axis of a plot against a swept ``axis`` (log-2 for sizes spanning 8x or more), labels, grid, legend."""
    if numeric and axis in ("per_class", "num_classes") and max(every) / max(min(every), 1e-9) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(every, [str(v) for v in every])
        ax.minorticks_off()
    elif not numeric:
        ax.set_xticks(range(len(every)), [str(v) for v in every], rotation=30)
    elif all(float(v).is_integer() for v in every):  # epochs, class counts, images per class: no fractions
        if len(every) <= 12:
            ax.set_xticks(every, [str(v) for v in every])
        else:
            integer_ticks(ax)
    ax.set_xlabel(axis.replace("_", " "))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    outside_legend(ax)


def accuracy_vs_temperature(records: list[RunRecord]):
    """Maximum and final validation accuracy (and test accuracy) of temperature features against T."""
    series: dict[tuple, dict[float, list[ProbeResult]]] = defaultdict(lambda: defaultdict(list))
    for (method, backbone, setting), group in group_by_setting(records, "temperature").items():
        for r in group:
            if isinstance(r.result, ProbeResult) and r.result.temperature is not None:
                series[(method, backbone, setting)][float(r.result.temperature)].append(r.result)
    if not series:
        return None
    figure, axes = new_figure(7, 4.2)
    ax = axes[0][0]
    for index, ((method, backbone, setting), by_t) in enumerate(sorted(series.items(), key=lambda kv: str(kv[0]))):
        ts = sorted(by_t)
        label = _label(method, backbone, setting)
        for offset, (figure_of, linestyle, name) in enumerate(((lambda r: r.val_accuracy_max, "-", "val max"),
                                                               (lambda r: r.val_accuracy_final, "--", "val final"),
                                                               (lambda r: r.accuracy, ":", "test"))):
            ys = [np.mean([figure_of(r) for r in by_t[t] if figure_of(r) is not None] or [np.nan]) for t in ts]
            ax.plot(ts, ys, label=f"{label}: {name}", **{**series_style(3 * index + offset), "linestyle": linestyle})
    ax.set_xscale("log")
    every = sorted({t for by_t in series.values() for t in by_t})
    ax.set_xticks(every, [f"{t:g}" for t in every])
    ax.minorticks_off()
    ax.set_xlabel("temperature T (features = softmax(logits / T))")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs temperature")
    ax.grid(alpha=0.3)
    outside_legend(ax)
    return figure
