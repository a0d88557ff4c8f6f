"""Every report section for every data source: a list file (CSV) and a CIFAR binary folder, through the CLI.

Class folders were the only source whose images the report could find again; a list file's
and a CIFAR batch's test images must give the same sections: samples (only of the classes the
study uses), misclassified images, top losses, confident mistakes with Grad-CAM, activation maps.
"""

from __future__ import annotations

import html
import re

import pytest

from helpers import make_class_folders, run_cli
from study_fixtures import TINY_BACKBONE, write_study
from test_data_sources import make_cifar10, make_list


def _list_file(tmp):
    make_class_folders(tmp / "images", {"red": 10, "green": 10, "blue": 10})
    (tmp / "lists").mkdir()
    rows = ["path,label"] + [f"../images/{c}/{c}_{i:03d}.png,{c}" for c in ("red", "green", "blue") for i in range(10)]
    return make_list(tmp / "lists", rows), ["blue", "green"]


def _cifar(tmp):
    return make_cifar10(tmp / "cifar-10-batches-bin", per_class_per_batch=3), ["airplane", "automobile"]


@pytest.fixture(scope="module", params=[_list_file, _cifar], ids=["list-file", "cifar-binary"])
def report(request, tmp_path_factory):
    """A fine-tune that cannot learn (rate 1e-9: it makes mistakes to show) on 2 of the source's classes,
    run and reported through the command line with every image section."""
    tmp = tmp_path_factory.mktemp(request.param.__name__.strip("_"))
    data, used = request.param(tmp)
    path = write_study(tmp, f"""
        name: sources
        data: {data}
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8, image_size: 64, num_classes: 2}}
        methods:
          - {{name: frozen, kind: finetune, freeze: all, epochs: 1, lr: 1.0e-9, early_stopping: none}}
        """)
    env = {"TRANSFERLAB_CACHE_DIR": str(tmp / "cache")}
    store = str(tmp / "runs.sqlite")
    ran = run_cli("study", "run", str(path), "--store", store, env=env)
    assert ran.returncode == 0, ran.stderr
    reported = run_cli("study", "report", str(path), "--store", store, "--out", str(tmp / "report"), env=env)
    assert reported.returncode == 0, reported.stderr
    return html.unescape((tmp / "report" / "report.html").read_text()), used


def _images_in(page: str, block: str) -> int:
    found = re.search(rf'<div class="gallery" id="{block}">(.*?)</div>', page, re.S)
    return len(re.findall(r'<img src="data:image/', found.group(1))) if found else 0


def test_samples_show_only_the_classes_the_study_uses(report):
    page, used = report
    assert 'id="samples"' in page
    assert f"the first images of each of the 2 classes the study uses ({', '.join(used)})" in page


def test_misclassified_images_are_drawn(report):
    page, _ = report
    section = page[page.index('id="misclassified"'):]
    gallery = section[:section.index("</div>")]
    assert "first " in section and len(re.findall(r'<img src="data:image/', gallery)) > 0


def test_top_losses_and_confident_mistakes_with_grad_cam_are_drawn(report):
    page, _ = report
    assert _images_in(page, "top-losses-gallery") > 0
    assert _images_in(page, "confident-mistakes-gallery") > 0
    assert 'alt="Grad-CAM of' in page and "could not be drawn" not in page


def test_activation_maps_are_drawn_for_a_test_image(report):
    page, _ = report
    assert re.search(r"activation maps of \S+ for \S+", page)


def test_a_stored_cifar_prediction_finds_its_own_record(tmp_path):
    """``test_batch.bin#4`` is the fifth record's pixels, as the run read them (CIFAR-10: one label byte each)."""
    from transferlab.data.cifar import CIFAR10, read_records
    from transferlab.report.pictures import find_picture

    root = make_cifar10(tmp_path / "cifar-10-batches-bin")
    records = read_records(root / CIFAR10.test, CIFAR10, 10)
    for index in (0, 4, len(records) - 1):
        found = find_picture(str(records[index][0]))
        assert found is not None and found.pixels == records[index][0].pixels and found.index == index
    assert find_picture(f"{root / CIFAR10.test}#{len(records)}") is None  # past the last record
    assert find_picture(f"{root / 'batches.meta.txt'}#0") is None  # not a batch file
    assert find_picture(str(tmp_path / "gone.png")) is None
