"""Study reports' "data audit" section: the audit's findings on the study's data, and a warning when test images
have near-duplicates in training."""

from __future__ import annotations

import pytest

from study_fixtures import TINY_BACKBONE, write_study
from test_audit import near_copy, smooth_image

pytest.importorskip("imagehash")


def fake_audit(splits: list[str], pairs: list[tuple[int, int]]):
    from transferlab.audit.confident import LabelIssue
    from transferlab.audit.duplicates import DuplicatePair
    from transferlab.audit.run import AuditResult

    n = len(splits)
    return AuditResult(data="d", classes=["a", "b"], paths=[f"img{i}.png" for i in range(n)], labels=[0] * n,
                       splits=splits, out_of_fold_accuracy=0.9, label_issues=[LabelIssue(1, 0, 1, 0.05)],
                       duplicates=[DuplicatePair(i, j, 0.97, 3, False) for i, j in pairs], overlap=[])


def test_only_a_test_image_with_a_training_copy_raises_the_warning():
    from transferlab.report.audit_section import audit_markdown, audit_summary, leak_warning

    within = audit_summary(fake_audit(["train", "val", "train", "test"], [(0, 1), (0, 2)]), "b")
    assert within["duplicate_pairs"] == 2 and within["cross_split_pairs"] == 1 and within["train_test_pairs"] == 0
    assert leak_warning(within) is None and "Warning" not in audit_markdown(within)
    leaking = audit_summary(fake_audit(["train", "test", "test", "train"], [(1, 0), (2, 0), (3, 0)]), "b")
    assert leaking["train_test_pairs"] == 2 and leaking["test_images_with_training_copy"] == 2
    assert leaking["leak_rows"][0] == {"test": "img1.png", "training": "img0.png", "cosine": 0.97, "hash_distance": 3}
    text = audit_markdown(leaking)
    assert "2 test images have a near-duplicate in training" in text and "1 suspected label issue" in text


@pytest.fixture
def leaky_study(tmp_path):
    """Given train/ and test/ splits of 3 classes; one training picture's near copy planted in test."""
    root = tmp_path / "data"
    for c, name in enumerate(("red", "green", "blue")):
        for split, count in (("train", 10), ("test", 3)):
            for i in range(count):
                path = root / split / name / f"{name}_{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                smooth_image(1000 * c + (0 if split == "train" else 100) + i, c).save(path)
    copy = root / "test" / "green" / "copy.jpg"
    near_copy(smooth_image(1000 + 4, 1)).convert("RGB").save(copy, "JPEG", quality=70)
    study = write_study(tmp_path, f"""
        name: leaky
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8, precision: fp32}}
        methods:
          - {{name: logreg, kind: probe, head: logreg}}
        """)
    return study, copy


def test_study_report_audit_section_warns_of_the_planted_leak(leaky_study, tmp_path, cli):
    study, copy = leaky_study
    store = str(tmp_path / "runs.sqlite")
    assert cli("study", "run", str(study), "--store", store).returncode == 0
    plain = cli("study", "report", str(study), "--store", store, "--out", str(tmp_path / "plain"), "--no-images")
    assert plain.returncode == 0, plain.stderr
    assert "Data audit" not in (tmp_path / "plain" / "report.md").read_text()
    audited = cli("study", "report", str(study), "--store", store, "--out", str(tmp_path / "audited"), "--no-images",
                  "--audit", "efficientnet_lite0")
    assert audited.returncode == 0, audited.stderr
    text = (tmp_path / "audited" / "report.md").read_text()
    assert "## Data audit" in text and "1 test image has a near-duplicate in training" in text
    from transferlab.report.tables import markdown_text

    training = copy.parent.parent.parent / "train" / "green" / "green_04.png"
    assert markdown_text(str(copy)) in text and markdown_text(str(training)) in text
    html = (tmp_path / "audited" / "report.html").read_text()
    assert 'id="data-audit"' in html and 'class="warning"' in html and "copy.jpg" in html
