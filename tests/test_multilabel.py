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
