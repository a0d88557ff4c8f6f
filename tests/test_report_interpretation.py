"""The report's interpretation: confident mistakes and top losses ranked right, filters drawn from the saved model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study_fixtures import finetune_result
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.bundle import save_bundle
from transferlab.report import write_report
from transferlab.report.bundles import SavedModels
from transferlab.report.filters import first_and_last_conv, run_figures
from transferlab.report.interpret import (ScoredImage, confident_mistakes, images_to_score, score_images,
                                          top_losses)
from transferlab.report.records import RunRecord


def scored(name: str, true: str, predicted: str, probability: float, true_probability: float) -> ScoredImage:
    return ScoredImage(name, true, predicted, probability, true_probability, -math.log(true_probability))


def test_confident_mistakes_are_the_wrong_ones_with_the_highest_predicted_probability():
    # by loss the order would differ: wrong-0.5 gave its true class least (0.01)
    images = [scored("right-sure", "a", "a", 0.99, 0.99), scored("wrong-0.6", "a", "b", 0.6, 0.39),
              scored("wrong-0.9", "b", "c", 0.9, 0.08), scored("wrong-0.5", "c", "a", 0.5, 0.01),
              scored("right-unsure", "b", "b", 0.4, 0.4)]
    assert [s.path for s in confident_mistakes(images)] == ["wrong-0.9", "wrong-0.6", "wrong-0.5"]
    assert [s.path for s in confident_mistakes(images, n=2)] == ["wrong-0.9", "wrong-0.6"]


def test_top_losses_rank_every_image_by_the_loss_of_its_true_class_highest_first():
    images = [scored("low", "a", "a", 0.9, 0.9), scored("unsure-right", "a", "a", 0.34, 0.34),
              scored("high", "a", "b", 0.9, 0.01), scored("mid", "b", "a", 0.6, 0.2)]
    assert [s.path for s in top_losses(images)] == ["high", "mid", "unsure-right", "low"]
    assert [s.path for s in top_losses(images, n=2)] == ["high", "mid"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny fine-tuned bundle and the folder of its data."""
    from helpers import make_class_folders

    root = tmp_path_factory.mktemp("interpretation")
    data = make_class_folders(root / "data", {"a": 6, "b": 6, "c": 6})
    result = run_finetune(FinetuneConfig(data=str(data), output=str(root / "m"), backbone="test_efficientnet",
                                         random_init=True, image_size=64, epochs=1, freeze="none", batch_size=8,
                                         num_workers=0, early_stopping="none"))
    return root, result


def test_scores_are_the_bundles_own_probabilities_and_cross_entropy(trained):
    root, _ = trained
    bundle = load_bundle(root / "m")
    files = sorted((root / "data").rglob("*.png"))[:9]
    items = [{"path": str(f), "true": f.parent.name, "predicted": "a"} for f in files]
    result = score_images(bundle, items)
    assert [s.path for s in result] == [str(f) for f in files]
    transform = bundle.transform()
    from transferlab.data import decode_rgb

    with torch.inference_mode():
        logits = bundle.model(torch.stack([transform(decode_rgb(f, transform.decode_min_size)) for f in files]))
    probabilities = logits.softmax(1)
    for s, row, f in zip(result, probabilities, files):
        assert s.predicted == bundle.classes[int(row.argmax())]
        assert s.probability == pytest.approx(float(row.max()), abs=1e-5)
        assert s.true_probability == pytest.approx(float(row[bundle.classes.index(f.parent.name)]), abs=1e-5)
        assert s.loss == pytest.approx(-math.log(s.true_probability), abs=1e-4)


def test_images_to_score_take_the_stored_mistakes_first_and_skip_what_cannot_be_scored(tmp_path):
    present = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"")
        present.append(str(path))
    predictions = [{"path": present[0], "true": "a", "predicted": "a"},
                   {"path": present[1], "true": "a", "predicted": "b"},
                   {"path": str(tmp_path / "gone.png"), "true": "a", "predicted": "b"},
                   {"path": present[2], "true": "zebra", "predicted": "a"},
                   {"path": present[3], "true": "b", "predicted": "a"}]
    chosen = images_to_score(predictions, ["a", "b"])
    assert [p["path"] for p in chosen] == [present[1], present[3], present[0]]
    assert [p["path"] for p in images_to_score(predictions, ["a", "b"], limit=1)] == [present[1]]


def _first_filter_pixels(figures) -> np.ndarray:
    caption, figure = figures[0]
    assert "first convolution" in caption
    return np.asarray(figure.axes[0].images[0].get_array())


def test_the_filters_of_a_run_that_saved_a_model_come_from_its_weights(trained, tmp_path):
    root, result = trained
    bundle = load_bundle(root / "m")
    (_, first), _ = first_and_last_conv(bundle.net)
    with torch.no_grad():  # a first filter no initialisation would give: a ramp across the kernel
        first.weight.copy_(torch.linspace(-1, 1, first.weight.numel()).view_as(first.weight))
    save_bundle(tmp_path / "altered", bundle.model, {k: v for k, v in bundle.meta.items() if k != "format"})
    config = {"backbone": "test_efficientnet", "random_init": True, "seed": 0, "image_size": 64}
    record = RunRecord("ft1", "fine-tuned", "finetune", "test_efficientnet", {}, "done",
                       finetune_result(model_path=str(tmp_path / "altered"), config=config), config=config)
    source, figures = run_figures(record, SavedModels(), None)
    assert source == "fine-tuned weights of run ft1"
    assert figures[0][0].startswith("fine-tuned weights of run ft1: ")
    kernel = first.weight[0].detach().numpy()
    expected = np.transpose((kernel - kernel.min()) / (kernel.max() - kernel.min()), (1, 2, 0))
    assert np.allclose(_first_filter_pixels(figures), expected, atol=1e-6)

    before = RunRecord("ft2", "fine-tuned", "finetune", "test_efficientnet", {}, "done",
                       finetune_result(model_path=str(tmp_path / "not-saved"), config=config), config=config)
    source, pretrained = run_figures(before, SavedModels(), None)
    assert source == "random initial weights"
    assert not np.allclose(_first_filter_pixels(pretrained), expected, atol=1e-3)


def test_a_saved_model_that_cannot_be_loaded_leaves_notes_not_a_failed_report(trained, tmp_path):
    root, _ = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("transferlab.json", "config.json"):
        (broken / name).write_bytes((root / "m" / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    images = sorted((root / "data").rglob("*.png"))
    predictions = [{"path": str(p), "true": p.parent.name, "predicted": "a"} for p in images[:6]]
    config = {"backbone": "test_efficientnet", "random_init": True, "seed": 0, "image_size": 64}
    record = RunRecord("bad1", "fine-tuned", "finetune", "test_efficientnet", {}, "done",
                       finetune_result(model_path=str(broken), config=config, predictions=predictions),
                       config=config)
    files = write_report([record], tmp_path / "report", images=True, new_images=root / "data" / "a")
    html = files["html"].read_text()
    assert "could not score its test images" in html
    assert "filters of test_efficientnet (random init) could not be drawn" in html
    assert "its saved model could not be used" in html


def test_a_report_loads_each_saved_model_once_for_all_its_sections(trained, tmp_path, monkeypatch):
    import transferlab.finetune.bundle as bundle_module
    import transferlab.finetune.use as use_module

    root, result = trained
    loads = []
    real = bundle_module.load_bundle

    def counting(folder):
        loads.append(str(folder))
        return real(folder)

    monkeypatch.setattr(bundle_module, "load_bundle", counting)
    monkeypatch.setattr(use_module, "load_bundle", counting)
    config = {"backbone": "test_efficientnet", "random_init": True, "seed": 0, "image_size": 64}
    record = RunRecord("ft1", "fine-tuned", "finetune", "test_efficientnet", {}, "done",
                       finetune_result(model_path=str(root / "m"), config=config, predictions=result.predictions),
                       config=config)
    html = write_report([record], tmp_path / "report", images=True, new_images=root / "data" / "b")["html"].read_text()
    assert 'id="top-losses-gallery"' in html and 'class="gradcam"' in html and 'id="filters-figures"' in html
    assert loads == [str(root / "m")]


def test_test_images_gone_from_disk_are_said_so_not_shown_as_no_mistakes(trained, tmp_path):
    root, _ = trained
    config = {"backbone": "test_efficientnet", "random_init": True, "seed": 0, "image_size": 64}
    gone = [{"path": str(tmp_path / "gone.png"), "true": "a", "predicted": "b"}]
    record = RunRecord("ft1", "fine-tuned", "finetune", "test_efficientnet", {}, "done",
                       finetune_result(model_path=str(root / "m"), config=config, predictions=gone), config=config)
    html = write_report([record], tmp_path / "report", images=True)["html"].read_text()
    assert "nothing to score" in html and "no test image is predicted wrong" not in html
    assert 'id="top-losses-gallery"' not in html
