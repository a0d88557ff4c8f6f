"""Calibration (ECE, ``--calibrate``'s temperature) and test-time augmentation (``--tta``), through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import center_crop

from PIL import Image

from transferlab import Predictor
from transferlab.calibration import expected_calibration_error, fit_temperature
from transferlab.finetune import load_bundle
from transferlab.finetune.model import TransferModel
from wiring import wires


def test_ece_of_a_hand_computed_case():
    """Confidences 0.95 (right), 0.96 (right) share bin 14; 0.62 (wrong), 0.71 (right), 0.83 (wrong) have one each:
    ECE = (2 * |1 - 0.955| + |0 - 0.62| + |1 - 0.71| + |0 - 0.83|) / 5."""
    probabilities = [[0.95, 0.05], [0.04, 0.96], [0.38, 0.62], [0.29, 0.71], [0.17, 0.83]]
    labels = [0, 1, 0, 1, 0]
    expected = (2 * 0.045 + 0.62 + 0.29 + 0.83) / 5
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    assert expected_calibration_error([[0.5, 0.5]] * 4, [0, 1, 0, 1]) == pytest.approx(0.0)


def test_fit_temperature_recovers_the_temperature_that_sharpened_calibrated_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    labels = np.array([rng.choice(5, p=np.exp(z) / np.exp(z).sum()) for z in logits])  # calibrated at T = 1
    assert fit_temperature(logits * 3.0, labels) == pytest.approx(3.0, rel=0.1)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Two colour classes with every third image wearing the other's colour: a from-scratch model trained long at a
    high rate memorises its training images and is overconfident on held-out ones (the case calibration is for)."""
    root = tmp_path_factory.mktemp("calibrate")
    for k, c in enumerate("ab"):
        (root / "data" / c).mkdir(parents=True)
        rng = np.random.default_rng(k)
        for i in range(90):
            base = np.zeros((32, 32, 3))
            base[..., k if i % 3 else 1 - k] = 200
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "data" / c / f"{c}{i:03d}.png")
    return root


def finetuned(root, cli, name, *extra):
    result = cli("finetune", "--data", str(root / "data"), "--output", str(root / name), "--backbone",
                 "test_efficientnet", "--random-init", "--image-size", "32", "--freeze", "none", "--epochs", "12",
                 "--lr", "0.01", "--early-stopping", "none", "--augment", "none", "--batch-size", "16", "--workers", "0",
                 "--device", "cpu", "--precision", "fp32", "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


_RUNS: dict = {}


@pytest.fixture
def calibrated_run(calibrated, cli):
    """``finetune --calibrate --tta 3`` on the noise, run once for the module through the command line."""
    if "m" not in _RUNS:
        _RUNS["m"] = finetuned(calibrated, cli, "m", "--calibrate", "--tta", "3")
    return _RUNS["m"]


@wires("FinetuneConfig.calibrate")
def test_calibrate_lowers_the_held_out_ece_and_saves_its_temperature(calibrated, calibrated_run):
    result = calibrated_run
    assert result["calibration_temperature"] > 1.5  # overconfident: the logits are softened
    assert result["ece"] < result["ece_uncalibrated"] - 0.1  # on the test split, which the fit never saw
    meta = json.loads((calibrated / "m" / "transferlab.json").read_text())
    assert meta["calibration"]["temperature"] == pytest.approx(result["calibration_temperature"])
    assert sum(result["reliability"]["count"]) == result["test_images"]


def test_predict_divides_the_logits_by_the_saved_temperature(calibrated, calibrated_run, cli):
    bundle = load_bundle(calibrated / "m")
    temperature = calibrated_run["calibration_temperature"]
    files = sorted((calibrated / "data").rglob("*.png"))[:6]
    printed = cli("predict", str(calibrated / "m"), *map(str, files), "--json", "--device", "cpu", "--precision",
                  "fp32", "--top-k", "2")
    assert printed.returncode == 0, printed.stderr
    transform = bundle.transform()
    for item, path in zip(json.loads(printed.stdout), files):
        with torch.no_grad():
            logits = bundle.net(transform(Image.open(path)).unsqueeze(0))[0]
        calibrated_p = (logits / temperature).softmax(0)
        assert item["top"][0]["probability"] == pytest.approx(float(calibrated_p.max()), abs=2e-4)
        assert abs(item["top"][0]["probability"] - float(logits.softmax(0).max())) > 1e-3  # not the raw softmax


@wires("FinetuneConfig.tta")
def test_finetune_tta_accuracy_is_what_the_predictor_with_tta_gives(calibrated, calibrated_run):
    result = calibrated_run
    assert result["tta"] == 3
    model = Predictor.load(calibrated / "m", device="cpu", precision="fp32", tta=3)
    paths = [p["path"] for p in result["predictions"]]
    truth = [p["true"] for p in result["predictions"]]
    guessed = [p.label for p in model.predict_batch(paths)]
    assert result["tta_accuracy"] == pytest.approx(np.mean([g == t for g, t in zip(guessed, truth)]))


def test_tta_averages_the_views_probabilities_and_one_view_is_plain(calibrated, calibrated_run):
    bundle = load_bundle(calibrated / "m")
    path = sorted((calibrated / "data").rglob("*.png"))[0]

    x = bundle.transform()(Image.open(path)).unsqueeze(0)
    with torch.no_grad():
        plain = (bundle.net(x) / bundle.temperature).softmax(1)[0]
        flipped = (bundle.net(x.flip(-1)) / bundle.temperature).softmax(1)[0]
    one = Predictor.load(calibrated / "m", device="cpu", precision="fp32", tta=1).predict(path)
    two = Predictor.load(calibrated / "m", device="cpu", precision="fp32", tta=2).predict(path)
    assert list(one.probabilities.values()) == pytest.approx(plain.tolist(), abs=1e-5)
    assert list(two.probabilities.values()) == pytest.approx(((plain + flipped) / 2).tolist(), abs=1e-5)
    assert not np.allclose(list(two.probabilities.values()), list(one.probabilities.values()), atol=1e-4)


def test_evaluate_tta_feeds_the_model_the_plain_flipped_and_zoomed_views(calibrated, calibrated_run, cli,
                                                                         monkeypatch):
    seen: list[torch.Tensor] = []
    forward = TransferModel.forward

    def recording(self, x, *args, **kwargs):
        seen.append(x.detach().clone())
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(TransferModel, "forward", recording)
    result = cli("evaluate", str(calibrated / "m"), "--data", str(calibrated / "data"), "--tta", "3", "--json",
                 "--batch-size", "256", "--device", "cpu", "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["tta"] == 3 and 0.0 <= printed["tta_accuracy"] <= 1.0
    plain, *views = seen  # one batch of all 180 images: the plain pass, then the TTA pass's three views
    assert len(views) == 3
    h, w = plain.shape[-2:]
    crop = F.interpolate(center_crop(plain, [round(h * 0.875), round(w * 0.875)]), size=(h, w), mode="bilinear",
                         align_corners=False)
    assert torch.equal(views[0], plain)
    assert torch.equal(views[1], plain.flip(-1))
    assert torch.allclose(views[2], crop, atol=1e-6)


def test_evaluate_prints_the_tta_gain_and_the_ece(calibrated, calibrated_run, cli):
    result = cli("evaluate", str(calibrated / "m"), "--data", str(calibrated / "data"), "--tta", "2", "--device",
                 "cpu")
    assert result.returncode == 0, result.stderr
    assert "test-time augmentation (2 views): accuracy" in result.stdout and "gain" in result.stdout
    assert "calibration error (ECE, 15 bins)" in result.stdout and "saved temperature" in result.stdout


@pytest.mark.parametrize("command", [
    ["evaluate", "MODEL", "--data", "DATA", "--tta", "0"],
    ["predict", "MODEL", "DATA", "--tta", "13"],
    ["finetune", "--data", "DATA", "--tta", "0"],
])
def test_a_bad_view_count_is_one_error_line(calibrated, calibrated_run, cli, command):
    args = [str(calibrated / "m") if a == "MODEL" else str(calibrated / "data") if a == "DATA" else a
            for a in command]
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "tta" in lines[0], result.stderr


@wires("ProbeConfig.calibrate")
def test_probe_calibrate_lowers_the_held_out_ece_of_an_overconfident_head(calibrated, cli):
    """logreg at C = 1000 on features that only tell the colour: right on 2/3 of the images and sure of all."""
    args = ["probe", "--data", str(calibrated / "data"), "--backbone", "test_efficientnet", "--random-init",
            "--image-size", "32", "--C", "1000", "--device", "cpu", "--precision", "fp32", "--json"]
    plain = cli(*args)
    assert plain.returncode == 0, plain.stderr
    plain = json.loads(plain.stdout)
    assert plain["ece"] is not None and plain["ece_uncalibrated"] is None and sum(plain["reliability"]["count"]) == \
        plain["test_images"]
    result = cli(*args, "--calibrate")
    assert result.returncode == 0, result.stderr
    result = json.loads(result.stdout)
    assert result["calibration_temperature"] > 1.5
    assert result["ece"] < result["ece_uncalibrated"] - 0.05


def test_the_report_shows_ece_tta_and_a_reliability_diagram(tmp_path):
    from study_fixtures import finetune_result
    from transferlab.report import write_report
    from transferlab.report.records import RunRecord
    from transferlab.report.tables import markdown_text

    reliability = {"confidence": [0.0] * 13 + [0.9, 0.97], "accuracy": [0.0] * 13 + [0.5, 0.75],
                   "count": [0] * 13 + [2, 4]}
    result = finetune_result(ece=0.05, ece_uncalibrated=0.3, calibration_temperature=2.0, reliability=reliability,
                             tta=5, tta_accuracy=0.85)
    record = RunRecord("f0", "ft", "finetune", "efficientnet_lite0", {"seed": 0}, "done", result, result.config)
    files = write_report([record], tmp_path / "report", images=False)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown_text("0.050 (0.300)") in markdown and markdown_text("0.8500 (5 views, +0.0500)") in markdown
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'id="reliability"' in html and "ECE 0.050 (0.300 before T = 2)" in html
    import csv

    with open(files["comparison_csv"], newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["ece_mean"]) == 0.05 and float(row["tta_accuracy_mean"]) == 0.85
