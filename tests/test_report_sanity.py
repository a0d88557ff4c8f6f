"""The report's sanity section, the display fixes and the cross-model predictions: each flag and fix specified."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from study_fixtures import CLASSES, finetune_result, probe_result
from transferlab.report import write_report
from transferlab.report.confusion import confusion_figure
from transferlab.report.curves import accuracy_vs_axis, overlaid_curves
from transferlab.report.gallery import THUMBNAIL, misclassified, spread_over_classes
from transferlab.report.records import RunRecord
from transferlab.report.sanity import sanity_findings


def record(result, run_id="r1", method="m", axes=None, status="done", error=None) -> RunRecord:
    return RunRecord(run_id, method, "finetune", "efficientnet_lite0", axes or {}, status, result,
                     config=result.config if result else {}, error=error)


def balanced(correct_per_class: list[int], n_per_class: int = 10) -> dict:
    """A result's fields for a 3-class test set of ``n_per_class`` each, ``correct_per_class`` right."""
    matrix, predictions = [], []
    for i, correct in enumerate(correct_per_class):
        row = [0, 0, 0]
        row[i] = correct
        row[(i + 1) % 3] += n_per_class - correct
        matrix.append(row)
        for j, count in enumerate(row):
            predictions += [{"path": f"/x/{i}-{j}-{k}.png", "true": CLASSES[i], "predicted": CLASSES[j]}
                            for k in range(count)]
    n = n_per_class * 3
    return dict(accuracy=sum(correct_per_class) / n, test_images=n, confusion_matrix=matrix, predictions=predictions)


def kinds(findings, run_id):
    return {f.kind for f in findings if f.run_id == run_id}


def test_a_run_at_chance_is_flagged_and_a_clearly_better_one_is_not():
    at_chance = record(probe_result(**balanced([4, 3, 4])), "chance")  # 11/30 against 1/3
    good = record(probe_result(**balanced([9, 8, 9])), "good")  # 26/30
    findings = sanity_findings([at_chance, good])
    assert "chance" in kinds(findings, "chance")
    assert "chance" not in kinds(findings, "good")


def test_chance_is_the_most_frequent_class_share_not_one_over_k():
    # 20 of 30 test images are class 0: predicting it always scores 0.667, so 0.7 is not above chance
    matrix = [[20, 0, 0], [5, 1, 0], [4, 0, 0]]
    predictions = ([{"path": "p", "true": "ant", "predicted": "ant"}] * 20 + [{"path": "p", "true": "bee",
                   "predicted": "ant"}] * 5 + [{"path": "p", "true": "bee", "predicted": "bee"}]
                   + [{"path": "p", "true": "wasp", "predicted": "ant"}] * 4)
    majority = record(probe_result(accuracy=21 / 30, test_images=30, confusion_matrix=matrix,
                                   predictions=predictions), "majority")
    assert "chance" in kinds(sanity_findings([majority]), "majority")


def test_a_model_predicting_one_class_for_every_image_is_flagged():
    fields = balanced([10, 0, 0])
    fields["predictions"] = [dict(p, predicted="ant") for p in fields["predictions"]]
    one = record(probe_result(**fields), "one")
    two = record(probe_result(**balanced([10, 10, 0])), "two")
    findings = sanity_findings([one, two])
    assert "one-class" in kinds(findings, "one")
    assert "one-class" not in kinds(findings, "two")


def test_a_flat_validation_curve_is_flagged_and_a_moving_one_is_not():
    flat_history = [{"epoch": e, "val_accuracy": 0.333, "train_loss": 1.0} for e in range(1, 5)]
    flat = record(finetune_result(**balanced([9, 9, 9]), history=flat_history), "flat")
    moving = record(finetune_result(**balanced([9, 9, 9])), "moving")  # val accuracy rises each epoch
    findings = sanity_findings([flat, moving])
    assert "flat-validation" in kinds(findings, "flat")
    assert "flat-validation" not in kinds(findings, "moving")


def test_skipped_backbones_and_failed_runs_are_named():
    failed = record(None, "bad", status="failed", error="non-finite loss")
    findings = sanity_findings([failed], ["skipped optional backbone resnet50: no weights on this machine",
                                          "a is the same experiment as b: run once"])
    assert [f.detail for f in findings if f.kind == "skipped-backbone"] == [
        "skipped optional backbone resnet50: no weights on this machine"]
    assert [(f.run_id, f.detail) for f in findings if f.kind == "failed"] == [("bad", "non-finite loss")]


def test_the_report_has_the_sanity_section_in_html_and_markdown(tmp_path):
    at_chance = record(probe_result(**balanced([3, 4, 3])), "chance-run")
    files = write_report([at_chance], tmp_path / "report", images=False,
                         notes=["skipped optional backbone resnet50: no weights on this machine"])
    html = files["html"].read_text()
    assert 'id="sanity"' in html and "chance-run" in html and "skipped optional backbone resnet50" in html
    markdown = files["markdown"].read_text()
    assert "## Sanity checks" in markdown and "chance-run" in markdown


def test_a_clean_report_says_no_run_was_flagged(tmp_path):
    files = write_report([record(probe_result(**balanced([10, 9, 10])), "fine")], tmp_path / "r", images=False)
    assert "No run was flagged" in files["markdown"].read_text()


# -- display -----------------------------------------------------------------------------------------------


def test_misclassified_galleries_take_mistakes_from_every_class_in_turn():
    items = ([{"true": "ant", "n": i} for i in range(5)] + [{"true": "bee", "n": 0}, {"true": "wasp", "n": 0}])
    assert [i["true"] for i in spread_over_classes(items)[:3]] == ["ant", "bee", "wasp"]
    assert sorted(map(str, spread_over_classes(items))) == sorted(map(str, items))  # nothing lost or repeated


def test_small_images_are_enlarged_to_a_readable_thumbnail(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    result = probe_result(predictions=[{"path": str(path), "true": "ant", "predicted": "bee"}])
    (thumb,) = misclassified(record(result))
    import base64
    import io

    shown = Image.open(io.BytesIO(base64.b64decode(thumb.uri.split(",", 1)[1])))
    assert max(shown.size) == THUMBNAIL  # 8 px x 16
    assert len(set(np.asarray(shown.convert("L")).ravel().tolist())) == 64  # enlarged without smoothing


def _contrast(a, b) -> float:
    def luminance(c):
        c = np.asarray(c[:3], dtype=float)
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("matrix", [[[50, 45], [40, 50]], [[30, 2], [1, 28]], [[5, 0], [0, 5]]])
def test_every_count_in_a_confusion_matrix_is_readable_on_its_cell(matrix):
    from matplotlib.colors import to_rgba

    figure = confusion_figure(matrix, ["ants", "bees"], "t")
    ax = figure.axes[0]
    image = ax.images[0]
    for text in ax.texts:
        x, y = (int(round(v)) for v in text.get_position())
        background = image.cmap(image.norm(matrix[y][x]))
        assert _contrast(to_rgba(text.get_color()), background) >= 3.0, (matrix[y][x], text.get_color())


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_a_legend_of_many_lines_stays_outside_the_data():
    records = [record(probe_result(accuracy=0.3 + 0.02 * i + 0.01 * p), f"r{i}-{p}", method=f"method-{i}",
                      axes={"per_class": p}) for i in range(11) for p in (2, 8)]
    figure = accuracy_vs_axis(records, "per_class")
    figure.canvas.draw()
    ax = figure.axes[0]
    assert not _overlaps(ax.get_legend().get_window_extent(), ax.get_window_extent())


def test_runs_that_differ_in_one_axis_share_one_plot_of_validation_curves():
    runs = [record(finetune_result(history=[{"epoch": e, "val_accuracy": t * e / 10} for e in range(1, 4)]),
                   f"t{t}", axes={"temperature": t}) for t in (0.5, 1, 4)]
    figures = overlaid_curves(runs, "temperature")
    assert len(figures) == 1
    lines = figures[0].axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["temperature=0.5", "temperature=1", "temperature=4"]
    assert list(lines[2].get_ydata()) == pytest.approx([0.4, 0.8, 1.2])


def test_the_gallery_of_a_run_spreads_its_mistakes_over_classes(tmp_path):
    predictions = []
    for true, count in (("ant", 5), ("bee", 1)):
        for i in range(count):
            path = tmp_path / f"{true}{i}.png"
            Image.new("RGB", (20, 20), "red").save(path)
            predictions.append({"path": str(path), "true": true, "predicted": "wasp"})
    shown = misclassified(record(probe_result(predictions=predictions)), limit=2)
    assert [t.true for t in shown] == ["ant", "bee"]


def test_the_report_opens_with_samples_of_every_class(tmp_path):
    from study_fixtures import make_image_folder
    from transferlab.report.samples import dataset_samples, samples_figure

    data = make_image_folder(tmp_path / "data", per_class=8)
    names, shown = dataset_samples(data, per_class=3)
    assert names == ["blue", "green", "red"] and all(len(paths) == 3 for paths in shown.values())
    figure = samples_figure(shown)
    assert sum(1 for ax in figure.axes if ax.images) == 9
    result = probe_result(config={"data": str(data)})
    files = write_report([record(result)], tmp_path / "report")
    assert 'id="samples"' in files["html"].read_text()


def test_training_accuracy_is_plotted_against_samples_per_class_beside_test_accuracy():
    from transferlab.report.curves import train_accuracy_vs_axis

    runs = [record(probe_result(accuracy=0.5 + p / 100, train_accuracy_final=1.0 - p / 100), f"r{p}-{s}",
                   axes={"per_class": p, "seed": s}, method="logreg") for p in (2, 8, 32) for s in (0, 1)]
    figure = train_accuracy_vs_axis(runs, "per_class")
    lines = {bars.get_label(): bars[0] for bars in figure.axes[0].containers}  # each errorbar's data line
    train = next(line for label, line in lines.items() if label.endswith(": train"))
    test = next(line for label, line in lines.items() if label.endswith(": test"))
    assert list(train.get_ydata()) == pytest.approx([0.98, 0.92, 0.68])
    assert list(test.get_ydata()) == pytest.approx([0.52, 0.58, 0.82])
    assert train_accuracy_vs_axis([record(probe_result(), "x", axes={"per_class": 2})], "per_class") is None
