"""Reports from stored records: tables hold the stored numbers, figures are drawn, files are self-contained."""

from __future__ import annotations

import csv
import re
from dataclasses import asdict

import pytest
from PIL import Image

from transferlab.finetune.config import FinetuneConfig, FinetuneResult
from transferlab.report import records_for_ids, write_report
from transferlab.report.curves import accuracy_vs_axis, learning_curves
from transferlab.report.gallery import misclassified
from transferlab.report.tables import comparison_rows, confused_pairs, head_parameters
from transferlab.study.store import RunStore

CLASSES = ["ant", "bee", "wasp"]


def finetune_result(accuracy: float, seed: int, per_class: int, image_dir) -> dict:
    history = [{"epoch": e, "stage": "head" if e <= 3 else "fine-tune", "lr": 1e-3, "train_loss": 1.0 / e,
                "train_accuracy": 0.5 + e / 20, "val_loss": 1.1 / e, "val_accuracy": 0.4 + e / 20, "seconds": 2.0}
               for e in range(1, 6)]
    paths = []
    for i, colour in enumerate(("red", "green", "blue")):
        path = image_dir / f"img{i}.png"
        Image.new("RGB", (30, 20), colour).save(path)
        paths.append(str(path))
    config = FinetuneConfig(data="/data", backbone="efficientnet_lite0", seed=seed, per_class=per_class)
    result = FinetuneResult(
        backbone="efficientnet_lite0", timm_name="tf_efficientnet_lite0", freeze="two-stage", head="linear",
        data="/data", evaluated_on="test", classes=CLASSES, train_images=9, val_images=3, test_images=6,
        accuracy=accuracy, macro_f1=accuracy, epochs_run=5, seconds_per_epoch=2.0, training_seconds=10.0,
        trainable_parameters=1000, frozen_parameters=9000, total_parameters=10000, backbone_layers=20,
        frozen_layers=0, feature_dim=1280, inference_ms_per_image=3.5, best_epoch=5, stage2_start_epoch=4,
        prefix_cache_used=True, model_path="/models/x", history=history,
        confusion_matrix=[[2, 0, 0], [1, 1, 0], [0, 0, 2]],
        predictions=[{"path": paths[0], "true": "ant", "predicted": "ant"},
                     {"path": paths[1], "true": "bee", "predicted": "ant"},
                     {"path": str(image_dir / "gone.png"), "true": "wasp", "predicted": "bee"}],
        config=asdict(config),
    )
    return asdict(result)


def probe_result(accuracy: float, seed: int, per_class: int) -> dict:
    return {"backbone": "efficientnet_lite0", "head": "logreg", "classes": CLASSES, "accuracy": accuracy,
            "macro_f1": accuracy, "feature_dim": 1280, "backbone_layers": 20, "backbone_parameters": 3_371_000,
            "head_fit_seconds": 0.25, "extraction_seconds": 4.0, "inference_ms_per_image": 2.0, "history": [],
            "confusion_matrix": [[2, 0, 0], [0, 0, 2], [0, 0, 2]], "predictions": [], "temperature": None,
            "config": {"seed": seed, "per_class": per_class}}


@pytest.fixture
def stored(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    images = tmp_path / "images"
    images.mkdir()
    accuracies = {}
    for method, kind, make in (("two-stage", "finetune", None), ("logreg", "probe", probe_result)):
        for per_class in (2, 8):
            for seed in (0, 1):
                run_id = f"{method}-{per_class}-{seed}"
                accuracy = 0.5 + per_class / 40 + seed / 10 + (0.05 if kind == "probe" else 0.0)
                result = make(accuracy, seed, per_class) if make else finetune_result(accuracy, seed, per_class, images)
                labels = {"study": "s", "method": method, "kind": kind, "runner": kind, "backbone": "efficientnet_lite0",
                          "axes": {"per_class": per_class, "seed": seed}}
                store.claim(run_id, labels, {"seed": seed, "per_class": per_class, "backbone": "efficientnet_lite0"})
                store.finish(run_id, result, 1.0, {"torch": "2.x", "cpu": "test cpu", "torch_threads": 2})
                accuracies[run_id] = accuracy
    return store, accuracies


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
    assert thumbnails[0].uri.startswith("data:image/jpeg;base64,")


def test_filters_and_activation_maps_of_first_and_last_convolution(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transferlab.report.filters import backbone_figures

    image = tmp_path / "x.png"
    Image.new("RGB", (50, 40), "orange").save(image)
    figures = backbone_figures({"backbone": "test_efficientnet", "random_init": True}, image)
    captions = [caption for caption, _ in figures]
    assert captions[0].startswith("first convolution conv_stem")
    assert sum("activation maps" in c for c in captions) == 2
    without_image = backbone_figures({"backbone": "test_efficientnet", "random_init": True}, None)
    assert without_image and all("activation" not in caption for caption, _ in without_image)
