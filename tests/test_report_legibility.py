"""The report's figures read at a glance: whole-number ticks on whole-number axes, no label cut off or drawn over
an image, one plot per axis the study swept, series that stay visible when they coincide."""

from __future__ import annotations

from PIL import Image

from study_fixtures import CLASSES, finetune_result, probe_result
from transferlab.report import write_report
from transferlab.report.curves import accuracy_vs_axis, learning_curves, overlaid_curves, swept_axes
from transferlab.report.outside import top_bars
from transferlab.report.plots import png_bytes
from transferlab.report.records import RunRecord


def _probe(method: str, accuracy: float, seed: int = 0, **axes) -> RunRecord:
    predictions = [{"path": f"/img/{i}.png", "true": CLASSES[i % 3], "predicted": CLASSES[i % 3]} for i in range(6)]
    return RunRecord(f"{method}-{axes}-{seed}", method, "probe", "efficientnet_lite0", {**axes, "seed": seed}, "done",
                     probe_result(accuracy, seed, predictions=predictions), {"seed": seed})


def _drawn_ticks(axis) -> list[float]:
    axis.figure.canvas.draw()
    low, high = axis.axes.get_xlim()
    return [t for t in axis.get_majorticklocs() if low <= t <= high]


def test_class_counts_and_images_per_class_get_whole_number_ticks():
    for name, values in (("num_classes", (3, 5)), ("per_class", (2, 3, 5, 7)), ("per_class", (1, 2, 4, 8, 16))):
        records = [_probe(m, 0.5 + v / 40, **{name: v}) for m in ("a", "b") for v in values]
        figure = accuracy_vs_axis(records, name)
        ticks = _drawn_ticks(figure.axes[0].xaxis)
        assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
        assert {int(t) for t in ticks} >= set(values)


def test_epoch_axes_get_whole_number_ticks():
    record = RunRecord("ft", "two-stage", "finetune", "efficientnet_lite0", {"seed": 0}, "done", finetune_result(),
                       {"seed": 0})
    figure = learning_curves(record)
    for ax in figure.axes:
        ticks = _drawn_ticks(ax.xaxis)
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    history = [{"epoch": e, "val_accuracy": 0.5 + e / 20} for e in (1, 2, 3)]
    runs = [RunRecord(f"t{t}", "ft", "finetune", "efficientnet_lite0", {"lr": t, "seed": 0}, "done",
                      finetune_result(history=history), {"seed": 0}) for t in (0.1, 0.01)]
    ticks = _drawn_ticks(overlaid_curves(runs, "lr")[0].axes[0].xaxis)
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_coinciding_series_are_told_apart_by_their_markers():
    records = [_probe(m, 0.8, per_class=v) for m in ("a", "b", "c") for v in (2, 8)]  # three identical lines
    lines = [container.lines[0] for container in accuracy_vs_axis(records, "per_class").axes[0].containers]
    assert len(lines) == 3
    looks = {(line.get_marker(), line.get_fillstyle(), line.get_markersize()) for line in lines}
    assert len(looks) == 3 and len({look[0] for look in looks}) == 3


def test_an_axis_each_method_sets_once_is_not_plotted_as_if_swept():
    """Two methods with one value each of ``lr`` did not sweep it: no 'accuracy vs lr' of single points."""
    records = [_probe("a", 0.7, per_class=2, lr=0.1), _probe("a", 0.8, per_class=8, lr=0.1),
               _probe("b", 0.6, per_class=2, lr=0.01), _probe("b", 0.9, per_class=8, lr=0.01)]
    assert swept_axes(records) == ["per_class"]


def test_the_report_draws_no_plot_against_an_axis_nobody_swept(tmp_path):
    records = [_probe("a", 0.7, per_class=2, lr=0.1), _probe("a", 0.8, per_class=8, lr=0.1),
               _probe("b", 0.6, per_class=2, lr=0.01), _probe("b", 0.9, per_class=8, lr=0.01)]
    page = write_report(records, tmp_path / "out", images=False)["html"].read_text()
    assert 'id="accuracy-vs-per_class"' in page and 'id="accuracy-vs-lr"' not in page


def test_new_image_bar_labels_are_whole_and_clear_of_the_image(tmp_path):
    image = tmp_path / "an_outside_photo_with_a_long_name.png"
    Image.new("RGB", (60, 40), "orange").save(image)
    top = [{"label": "green_tree_frog_of_the_amazon_rainforest", "probability": 1.0},
           {"label": "yellow_submarine", "probability": 0.0}, {"label": "blue", "probability": 0.0}]
    figure = top_bars(image, top, "two-stage / efficientnet_lite0 [per_class=30 seed=0 augment=flip,crop]")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    png_bytes(figure)  # as the report draws it
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    whole = figure.bbox
    picture, bars = figure.axes
    texts = [t for t in bars.get_yticklabels() + bars.texts + [bars.title, picture.title] if t.get_text()]
    assert len(texts) >= 6  # three class names, three values, two titles
    for text in texts:
        box = text.get_window_extent(renderer)
        assert whole.x0 - 1 <= box.x0 and box.x1 <= whole.x1 + 1, text.get_text()
    image_box = picture.get_window_extent(renderer)
    for label in bars.get_yticklabels():
        assert label.get_window_extent(renderer).x0 >= image_box.x1, label.get_text()
    for value in bars.texts:
        assert value.get_window_extent(renderer).x1 <= bars.get_window_extent(renderer).x1, value.get_text()
