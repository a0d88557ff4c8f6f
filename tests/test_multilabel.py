"""Multi-label data: a list file's ``labels`` column, one sigmoid per label, scored by average precision, F1 at a
tuned threshold and subset accuracy.

The images are coloured: red, green and yellow (red and green at once), listed as ``red``, ``green`` and
``green;red``; a model that learnt the two labels predicts both for a yellow image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.data import load_dataset

TINY = ("--backbone", "test_efficientnet", "--random-init", "--image-size", "64", "--workers", "0")
COLOURS = {"red": (220, 0, 0), "green": (0, 220, 0), "yellow": (220, 220, 0)}
LABELS = {"red": "red", "green": "green", "yellow": "red;green"}  # yellow: both labels, given in either order


def write_coloured(root: Path, counts: dict[str, int], seed: int = 0) -> dict[str, list[Path]]:
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for colour, count in counts.items():
        for i in range(count):
            pixels = np.clip(np.array(COLOURS[colour], np.float64) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
            path = root / colour / f"{colour}_{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            written.setdefault(colour, []).append(path)
    return written


@pytest.fixture
def multi_list(tmp_path) -> Path:
    """list.csv with a labels column: 20 red, 20 green, 20 yellow (red and green) images."""
    written = write_coloured(tmp_path / "images", {"red": 20, "green": 20, "yellow": 20})
    rows = ["path,labels"] + [f"{p.relative_to(tmp_path)},{LABELS[c]}" for c, paths in written.items() for p in paths]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "list.csv"


def test_a_labels_column_makes_multi_label_splits(multi_list):
    splits = load_dataset(multi_list)
    assert splits.classes == ["green", "green;red", "red"]  # each set of labels is a class of the splits
    assert splits.outputs == ["green", "red"]  # the labels are what a model predicts
    yellow = next(s for s in splits.test if s.path.parent.name == "yellow")
    assert splits.label_sets.targets([yellow.label]).tolist() == [[1.0, 1.0]]


def test_multi_label_probe_predicts_two_labels_for_a_two_label_image(cli, multi_list):
    result = cli("probe", "--data", str(multi_list), *TINY, "--json", "--predictions")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["classes"] == ["green", "red"]
    yellow = [p for p in record["predictions"] if Path(p["path"]).parent.name == "yellow"]
    assert yellow and all(p["true"] == "green;red" for p in yellow)
    assert sum(p["predicted"] == "green;red" for p in yellow) > len(yellow) / 2
    assert set(record["label_scores"]) == {"green", "red"}
    assert 0 < record["threshold"] < 1 and record["mean_average_precision"] > 0.5


@pytest.mark.parametrize("header, cell, options, message", [
    ("path,label,labels", "red,red", (), "both a label and a labels column"),
    ("path,labels", " ; ", (), "empty labels"),
    ("path,labels", "red", ("--head", "knn"), "multi-label data takes the logreg head"),
    ("path,labels", "red", ("--calibrate",), "one sigmoid per label"),
])
def test_bad_multi_label_input_is_one_error_line(cli, multi_list, header, cell, options, message):
    rows = multi_list.read_text().splitlines()
    rows = [header] + [row if i else f"{row.split(',')[0]},{cell}" for i, row in enumerate(rows[1:])]
    multi_list.write_text("\n".join(rows) + "\n")
    result = cli("probe", "--data", str(multi_list), *TINY, *options)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr


@pytest.mark.filterwarnings("ignore:Label 0 is present in all training examples")
def test_the_head_initialised_from_the_probe_computes_the_one_vs_rest_logits():
    import torch
    from torch import nn

    from transferlab.engine.inputs import TensorInputs
    from transferlab.engine.runtime import Runtime
    from transferlab.engine.scoring import MultiLabelScoring
    from transferlab.finetune.head_init import fit_probe_head, head_inputs
    from transferlab.heads.sklearn_heads import one_vs_rest_logreg_head

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(12, 3)

        def forward(self, x, start=0):
            return self.classifier(x)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 12)) * rng.uniform(0.1, 5, size=12) + rng.normal(size=12)
    classes = np.arange(60) % 3  # label sets {0}, {0, 1}, {0, 2}: label 0 on every image
    rows = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32)
    X[classes == 1, 3] += 2.0
    X[classes == 2, 5] -= 2.0
    model = Identity()
    inputs = TensorInputs(torch.tensor(X, dtype=torch.float32), torch.tensor(classes))
    X_seen, y = head_inputs(model, model.classifier, inputs, Runtime(), batch_size=16)
    fit_probe_head(model.classifier, X_seen, y, seed=0, scoring=MultiLabelScoring(rows))

    expected = one_vs_rest_logreg_head(seed=0).fit(X, rows[classes]).predict_proba(X)
    probabilities = torch.sigmoid(model(torch.tensor(X, dtype=torch.float32))).detach().numpy()
    np.testing.assert_allclose(probabilities[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-4)
    assert np.all(probabilities[:, 0] > 0.99)  # the label every image has


def test_multi_label_finetune_and_predict_print_both_labels_of_a_two_label_image(cli, multi_list, tmp_path):
    model = tmp_path / "model"
    result = cli("finetune", "--data", str(multi_list), *TINY, "--freeze", "two-stage", "--epochs", "1",
                 "--stage2-epochs", "1", "--augment", "none", "--output", str(model), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["classes"] == ["green", "red"] and set(record["label_scores"]) == {"green", "red"}
    assert record["history"][0]["head_fit"] == "logreg"  # stage 1: the one-vs-rest probe folded into the head
    meta = json.loads((model / "transferlab.json").read_text())
    assert meta["multi_label"]["threshold"] == record["threshold"]

    yellow = sorted((multi_list.parent / "images" / "yellow").iterdir())
    predicted = cli("predict", str(model), *map(str, yellow), "--json")
    assert predicted.returncode == 0, predicted.stderr
    both = [item for item in json.loads(predicted.stdout) if {g["label"] for g in item["labels"]} == {"green", "red"}]
    assert len(both) > len(yellow) / 2
    shown = cli("predict", str(model), str(both[0]["image"]))
    line = shown.stdout.strip().splitlines()[0]
    assert "green" in line and "red" in line

    from transferlab import Predictor

    assert sorted(Predictor.load(model, device="cpu").predict(both[0]["image"]).labels) == ["green", "red"]


def test_a_study_report_shows_each_labels_figures(cli, multi_list, tmp_path):
    from study_fixtures import TINY_BACKBONE, write_study

    study = write_study(tmp_path, f"""
        name: colours
        data: {multi_list}
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8, precision: fp32, image_size: 64}}
        methods:
          - {{name: logreg, kind: probe, head: logreg}}
        """)
    store = str(tmp_path / "runs.sqlite")
    ran = cli("study", "run", str(study), "--store", store)
    assert ran.returncode == 0, ran.stderr
    report = cli("study", "report", str(study), "--store", store, "--out", str(tmp_path / "out"), "--no-images")
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "out" / "report.md").read_text()
    section = text.split("## Per-label figures (multi-label runs)")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "logreg" in line]
    assert sorted(line.split(" | ")[2] for line in rows) == ["green", "red"]
    assert "Per-label figures" in (tmp_path / "out" / "report.html").read_text()
