"""audit: confident learning finds a planted flipped label (and leaves an uncertain image alone), the
perceptual hash confirms a planted near-duplicate across splits, and the command writes its table, page
and fix list."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.audit.confident import class_thresholds, confident_joint, find_label_issues
from transferlab.audit.duplicates import find_duplicates
from wiring import wires


def planted_probabilities():
    """30 images per class of 3, predicted confidently; image 5 (labelled 0) is confidently class 2 (a flip);
    image 7 (labelled 0) leans to class 1 but below class 1's threshold (uncertain, not an issue)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    probabilities = np.full((90, 3), 0.05)
    probabilities[np.arange(90), labels] = 0.9
    probabilities += rng.uniform(0, 0.02, probabilities.shape)
    probabilities[5] = [0.04, 0.04, 0.92]
    probabilities[7] = [0.42, 0.48, 0.10]
    return probabilities / probabilities.sum(1, keepdims=True), labels


def test_a_planted_flipped_label_is_found_with_its_true_class():
    probabilities, labels = planted_probabilities()
    issues = find_label_issues(probabilities, labels)
    assert [(i.index, i.given, i.suggested) for i in issues] == [(5, 0, 2)]


def test_an_uncertain_image_below_the_class_threshold_is_not_counted():
    probabilities, labels = planted_probabilities()
    thresholds = class_thresholds(probabilities, labels)
    assert probabilities[7, 1] < thresholds[1]
    joint = confident_joint(probabilities, labels)
    assert joint[0, 1] == 0 and joint[0, 2] == 1  # image 7 reaches no threshold: not in the joint


def test_issues_are_ranked_by_self_confidence():
    probabilities, labels = planted_probabilities()
    probabilities[40] = [0.01, 0.06, 0.93]  # labelled 1, confidently 2
    probabilities[41] = [0.01, 0.01, 0.98]  # labelled 1, very confidently 2
    issues = find_label_issues(probabilities, labels)
    found = [i.index for i in issues]
    assert set(found) >= {5, 40, 41}
    confidences = [i.self_confidence for i in issues]
    assert confidences == sorted(confidences)


def smooth_image(seed: int, colour: int, size: int = 96) -> Image.Image:
    """A picture with structure a perceptual hash can see: a coarse random grid upsampled, tinted by class."""
    rng = np.random.default_rng(seed)
    grid = rng.uniform(0, 110, (6, 6, 3))
    grid[..., colour % 3] = rng.uniform(160, 255, (6, 6))
    return Image.fromarray(grid.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)


def near_copy(image: Image.Image) -> Image.Image:
    w, h = image.size
    cropped = image.crop((round(w * 0.05), round(h * 0.05), w - round(w * 0.05), h - round(h * 0.05)))
    return cropped.resize((round(cropped.width * 0.9), round(cropped.height * 0.9)), Image.Resampling.BICUBIC)


def test_the_hash_confirms_a_near_copy_and_rejects_a_different_picture_with_equal_features(tmp_path):
    paths = []
    for i, image in enumerate((smooth_image(1, 0), near_copy(smooth_image(1, 0)), smooth_image(2, 0))):
        paths.append(tmp_path / f"{i}.jpg")
        image.save(paths[-1], "JPEG", quality=70 if i == 1 else 95)
    features = np.ones((3, 4))  # all three look alike to the features: only the hash tells them apart
    pairs = find_duplicates(features, paths, ["a", "b", "c"], cosine=0.9, max_distance=16)
    assert [(p.first, p.second) for p in pairs] == [(0, 1)]
    assert not pairs[0].exact
    assert find_duplicates(features * np.array([[1], [-1], [1]]), paths, ["a", "b", "c"], 0.9, 16) == []


def test_the_same_picture_saved_twice_is_an_exact_duplicate(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    image = smooth_image(5, 2)
    first, second, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.jpg"
    image.save(first)
    info = PngInfo()
    info.add_text("comment", "saved again")
    image.save(second, pnginfo=info)  # other bytes, the same pixels
    image.resize((86, 86), Image.Resampling.BICUBIC).save(other, "JPEG", quality=60)
    features = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.1]])  # the copy: cosine 0.995
    pairs = {(p.first, p.second): p.exact for p in find_duplicates(features, [first, second, other],
                                                                    ["a", "b", "c"], 0.9, 16)}
    assert pairs[(0, 1)] is True and pairs[(0, 2)] is False


@pytest.fixture
def planted_list(tmp_path) -> tuple[Path, Path, Path]:
    """3 classes x 16 training and 4 test images; one training label flipped; one training image's copy
    (resized to 90%, re-encoded) planted in test; one byte-identical copy in training. Returns (list file, flipped, copy)."""
    root = tmp_path / "images"
    rows = []
    for c, name in enumerate(("red", "green", "blue")):
        for i in range(20):
            path = root / name / f"{name}_{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            smooth_image(100 * c + i, c).save(path)
            rows.append([str(path), name, "train" if i < 16 else "test"])
    flipped = Path(rows[3][0])
    rows[3][1] = "blue"  # a red image labelled blue
    copy = root / "copies" / "leak <copy>.jpg"  # a name the page must escape
    copy.parent.mkdir(parents=True)
    Image.open(rows[25][0]).resize((86, 86), Image.Resampling.BICUBIC).save(copy, "JPEG", quality=60)
    rows.append([str(copy), "green", "test"])
    same = root / "copies" / "same.png"
    same.write_bytes(Path(rows[30][0]).read_bytes())
    rows.append([str(same), "green", "train"])
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label", "split"], *rows])
    return listing, flipped, copy


@wires("AuditConfig.html", "AuditConfig.fix")
def test_audit_finds_the_planted_label_issue_and_the_leak_end_to_end(planted_list, tmp_path, cli):
    listing, flipped, copy = planted_list
    page, fix = tmp_path / "page.html", tmp_path / "fixed.csv"
    result = cli("audit", "--data", str(listing), "--folds", "4", "--html", str(page), "--fix", str(fix), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    issues = {row["path"]: row for row in record["label_issues"]}
    assert str(flipped) in issues and issues[str(flipped)]["suggested"] == "red"
    assert len(issues) <= 3  # of 62 images
    pairs = {frozenset((row["first"], row["second"])): row for row in record["duplicates"]}
    leak = [row for key, row in pairs.items() if str(copy) in key]
    assert len(leak) == 1 and leak[0]["cross_split"] and sorted(leak[0]["splits"]) == ["test", "train"]
    exact = [row for row in record["duplicates"] if row["exact"]]
    assert len(exact) == 1 and not exact[0]["cross_split"]
    html = page.read_text()
    assert "data:image/" in html and "leak &lt;copy&gt;.jpg" in html and "<copy>" not in html
    assert "src=\"http" not in html
    with open(fix, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"path", "label", "split"}
    relabelled = {row["path"]: row["label"] for row in rows}
    assert relabelled[str(flipped.resolve())] == "red"
    assert len(rows) == 61  # 62 listed, the byte-identical copy dropped
    from transferlab.data.listfile import read_list

    assert len(read_list(fix)) == 61  # the fix list is a valid --data


def test_audit_table_warns_of_a_leak(planted_list, cli):
    listing, _, _ = planted_list
    result = cli("audit", "--data", str(listing), "--folds", "4")
    assert result.returncode == 0, result.stderr
    assert "span splits" in result.stdout and "suspected label issue" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--folds", "1"], "folds"),
    (["--hash-distance", "65"], "hash"),
    (["--fix", "out.txt"], ".csv or .tsv"),
    (["--layer", "99"], "unknown layer"),
])
def test_audit_bad_input_is_one_error_line(planted_list, cli, args, message):
    listing, _, _ = planted_list
    result = cli("audit", "--data", str(listing), *args)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr


@wires("AuditConfig.C", "AuditConfig.duplicate_cosine", "AuditConfig.hash_distance", "AuditConfig.overlap_pairs")
def test_audit_options_reach_the_probe_and_the_duplicate_search(planted_list, cli, monkeypatch):
    """--C, --duplicate-cosine, --hash-distance and --overlap-pairs as the loop passes them on."""
    from transferlab.audit import run
    from transferlab.heads import sklearn_heads

    seen = {}
    real_logreg, real_duplicates, real_overlap = sklearn_heads.logreg_head, run.find_duplicates, run.class_overlap
    monkeypatch.setattr(sklearn_heads, "logreg_head",
                        lambda C=0.1, seed=0: seen.setdefault("C", C) and real_logreg(C, seed))
    monkeypatch.setattr(run, "find_duplicates", lambda f, p, d, cosine, distance: seen.update(
        cosine=cosine, distance=distance) or real_duplicates(f, p, d, cosine, distance))
    monkeypatch.setattr(run, "class_overlap", lambda labels, predicted, classes, limit: seen.update(
        limit=limit) or real_overlap(labels, predicted, classes, limit))
    listing, _, _ = planted_list
    result = cli("audit", "--data", str(listing), "--folds", "3", "--C", "0.7", "--duplicate-cosine", "0.97",
                 "--hash-distance", "3", "--overlap-pairs", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert seen == {"C": 0.7, "cosine": 0.97, "distance": 3, "limit": 2}
