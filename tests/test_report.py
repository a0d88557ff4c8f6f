"""Reports from stored records: tables hold the stored numbers, figures are drawn, files are self-contained."""

from __future__ import annotations

import csv
import re
from dataclasses import asdict

import pytest
from PIL import Image

from study_fixtures import CLASSES, TINY_BACKBONE, finetune_result, make_image_folder, probe_result, write_study
from transferlab.finetune.result import FinetuneResult
from transferlab.probing.result import ProbeResult
from transferlab.report import records_for_ids, records_for_plan, write_report
from transferlab.report.curves import accuracy_vs_axis, learning_curves
from transferlab.report.gallery import misclassified
from transferlab.report.tables import comparison_rows, confused_pairs, head_parameters
from transferlab.study import load_study, plan_study, run_study
from transferlab.study.store import RunStore


@pytest.fixture
def stored(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    images = tmp_path / "images"
    images.mkdir()
    accuracies = {}
    for method, kind in (("two-stage", "finetune"), ("logreg", "probe")):
        for per_class in (2, 8):
            for seed in (0, 1):
                run_id = f"{method}-{per_class}-{seed}"
                accuracy = 0.5 + per_class / 40 + seed / 10 + (0.05 if kind == "probe" else 0.0)
                result = (probe_result(accuracy, seed, per_class) if kind == "probe"
                          else finetune_result(accuracy, seed, per_class, images))
                labels = {"study": "s", "method": method, "kind": kind, "runner": kind, "backbone": "efficientnet_lite0",
                          "axes": {"per_class": per_class, "seed": seed}}
                store.claim(run_id, labels, {"seed": seed, "per_class": per_class, "backbone": "efficientnet_lite0"})
                store.finish(run_id, result, 1.0, {"torch": "2.x", "cpu": "test cpu", "torch_threads": 2})
                accuracies[run_id] = accuracy
    return store, accuracies


def test_stored_results_come_back_typed(stored):
    store, accuracies = stored
    records = records_for_ids(store, list(accuracies))
    assert all(isinstance(r.result, FinetuneResult if r.method == "two-stage" else ProbeResult) for r in records)
    record = next(r for r in records if r.id == "two-stage-8-1")
    expected = finetune_result(accuracies["two-stage-8-1"], 1, 8, store.path.parent / "images")
    for name in ("accuracy", "history", "predictions", "confusion_matrix", "stage2_start_epoch", "runtime", "classes"):
        assert getattr(record.result, name) == getattr(expected, name)
    assert store.get("logreg-2-0").result_schema == 1


def test_comparison_table_has_mean_and_std_over_seeds(stored):
    store, accuracies = stored
    rows = comparison_rows(records_for_ids(store, list(accuracies)))
    row = next(r for r in rows if r["method"] == "two-stage" and r["setting"] == "per_class=8")
    assert row["runs"] == 2
    assert row["accuracy_mean"] == pytest.approx((accuracies["two-stage-8-0"] + accuracies["two-stage-8-1"]) / 2)
    assert row["test_accuracy"] == f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}"
    assert row["training"] == "5 x 2.00 s (mean)" and row["parameters"] == "1,000 / 10,000"
    probe = next(r for r in rows if r["method"] == "logreg")
    assert probe["trainable_parameters"] == 1281 * 3 and probe["total_parameters"] == 3_371_000 + 1281 * 3


def test_report_files_hold_the_stored_numbers(stored, tmp_path):
    store, accuracies = stored
    files = write_report(records_for_ids(store, list(accuracies)), tmp_path / "out", title="Bees", images=False)
    html = files["html"].read_text()
    for run_id, accuracy in accuracies.items():
        assert re.search(rf"<td class=\"col-id\">{run_id}</td>.*?{accuracy:.4f}", html)
    assert 'id="accuracy-vs-per_class"' in html and 'id="learning-curves"' in html
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["']https?:""", html)
    with open(files["comparison_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["runs"] for r in rows} == {"2"}
    markdown = files["markdown"].read_text()
    assert "| method | backbone | setting |" in markdown and "two-stage" in markdown
    pairs = files["confused_pairs_csv"].read_text()
    assert "bee,wasp,2" in pairs


def test_learning_curves_mark_the_start_of_stage_two(stored):
    store, _ = stored
    record = records_for_ids(store, ["two-stage-2-0"])[0]
    figure = learning_curves(record)
    vertical = [line for ax in figure.axes for line in ax.lines if len(set(line.get_xdata())) == 1]
    assert vertical and all(line.get_xdata()[0] == pytest.approx(3.5) for line in vertical)


def test_accuracy_vs_samples_has_one_line_per_method(stored):
    store, accuracies = stored
    figure = accuracy_vs_axis(records_for_ids(store, list(accuracies)), "per_class")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert sorted(labels) == ["logreg / efficientnet_lite0", "two-stage / efficientnet_lite0"]


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    matrix = [[5, 1, 0], [3, 4, 0], [0, 2, 6]]
    assert confused_pairs(matrix, CLASSES, top=2) == [("bee", "ant", 3), ("wasp", "bee", 2)]


def test_head_parameters():
    assert head_parameters("knn", 10, 3) == 0
    assert head_parameters("mlp:4", 10, 3) == 10 * 4 + 4 + 4 * 3 + 3


def test_misclassified_gallery_skips_right_answers_and_missing_files(stored):
    store, _ = stored
    thumbnails = misclassified(records_for_ids(store, ["two-stage-2-0"])[0])
    assert [(t.true, t.predicted) for t in thumbnails] == [("bee", "ant")]
    assert thumbnails[0].uri.startswith("data:image/png;base64,")  # a 30x20 image is enlarged, kept sharp as PNG


def test_filters_and_activation_maps_of_first_and_last_convolution(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transferlab.report.filters import backbone_figures

    image = tmp_path / "x.png"
    Image.new("RGB", (50, 40), "orange").save(image)
    figures = backbone_figures({"backbone": "test_efficientnet", "random_init": True}, image)
    captions = [caption for caption, _ in figures]
    assert captions[0].startswith("random initial weights: first convolution conv_stem")
    assert sum("activation maps" in c for c in captions) == 2
    without_image = backbone_figures({"backbone": "test_efficientnet", "random_init": True}, None)
    assert without_image and all("activation" not in caption for caption, _ in without_image)


def test_result_in_an_unknown_layout_is_reported_unreadable(stored, tmp_path):
    store, accuracies = stored
    store.db.execute("UPDATE runs SET result_schema = 0 WHERE id = 'logreg-2-0'")
    records = records_for_ids(store, list(accuracies))
    old = next(r for r in records if r.id == "logreg-2-0")
    assert old.status == "unreadable" and old.result is None and "run it again" in old.error
    files = write_report(records, tmp_path / "out", images=False)
    assert "1 unreadable" in files["markdown"].read_text()


def test_list_valued_sweep_plans_runs_and_reports(tmp_path, monkeypatch):
    """``sweep: {augment: [[flip], [flip, crop]]}``: list values group, label and plot like any other axis."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    make_image_folder(tmp_path / "data", per_class=3)
    path = write_study(tmp_path, f"""
        name: augment
        data: data
        backbones: [{TINY_BACKBONE}]
        methods:
          - {{name: ft, kind: finetune, epochs: 1, sweep: {{augment: [[], [flip], [flip, crop]]}}}}
        sweep:
          seed: [0, 1]
        """)
    plan = plan_study(load_study(path))
    assert [r.label() for r in plan.runs if r.axes["seed"] == 0] == [
        "ft / test_efficientnet [seed=0 augment=[]]", "ft / test_efficientnet [seed=0 augment=flip]",
        "ft / test_efficientnet [seed=0 augment=flip,crop]"]
    assert len({r.run_id for r in plan.runs}) == 6

    def stub(run, models_dir, progress):  # a real FinetuneResult, better with more augmentation
        accuracy = 0.6 + 0.1 * len(run.config.augment) + 0.01 * run.config.seed
        return finetune_result(accuracy, run.config.seed, 2, config=asdict(run.config))

    store = RunStore(tmp_path / "runs.sqlite")
    assert run_study(plan, store, runner=stub).count("done") == 6
    records = records_for_plan(store, plan)
    assert all(isinstance(r.result, FinetuneResult) for r in records)
    rows = comparison_rows(records)
    assert sorted(r["setting"] for r in rows) == ["augment=[]", "augment=flip", "augment=flip,crop"]
    assert all(r["runs"] == 2 for r in rows)
    figure = accuracy_vs_axis(records, "augment")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["[]", "flip", "flip,crop"]
    files = write_report(records, tmp_path / "out", title="augment", images=False)
    html = files["html"].read_text()
    assert 'id="accuracy-vs-augment"' in html and "augment=flip,crop" in html
