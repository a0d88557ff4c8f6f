"""A real study with a run forced to chance, a missing optional backbone and outside images, in headless chromium."""

from __future__ import annotations

import os

import pytest

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from test_report_browser import CHROMIUM, Browser
from transferlab.report import records_for_plan, write_report
from transferlab.study import RunStore, load_study, plan_study, run_study

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sanity-browser")
    saved = os.environ.get("TRANSFERLAB_CACHE_DIR")
    os.environ["TRANSFERLAB_CACHE_DIR"] = str(tmp / "cache")
    try:
        make_image_folder(tmp / "data", per_class=12)
        make_image_folder(tmp / "outside", per_class=1)
        path = write_study(tmp, f"""
            name: sanity study
            data: data
            new_images: outside
            backbones: [{TINY_BACKBONE}, {{name: resnet18, optional: true}}]
            settings: {{num_workers: 0, batch_size: 8}}
            methods:
              - {{name: fine-tuned, kind: finetune, freeze: none, epochs: 2, patience: 5}}
              - {{name: frozen-lr, kind: finetune, freeze: all, epochs: 2, lr: 1.0e-9, patience: 5}}
            """)
        spec = load_study(path)
        plan = plan_study(spec)
        store = RunStore(tmp / "runs.sqlite")
        run_study(plan, store, models_dir=tmp / "models")
        files = write_report(records_for_plan(store, plan), tmp / "report", title="sanity study", images=False,
                             notes=plan.notes, new_images=spec.relative(spec.new_images))
        yield files, store, plan
    finally:
        if saved is None:
            os.environ.pop("TRANSFERLAB_CACHE_DIR", None)
        else:
            os.environ["TRANSFERLAB_CACHE_DIR"] = saved


@pytest.fixture(scope="module")
def page(study, tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        browser.open_page()
        browser.send("Page.navigate", {"url": study[0]["html"].as_uri()})
        browser.wait_for("Page.loadEventFired", timeout=60)
        yield browser
    finally:
        browser.close()


def _findings(page) -> list[dict]:
    return page.evaluate("""[...document.querySelectorAll('#sanity-findings tbody tr')].map(tr => ({
        kind: tr.querySelector('.col-kind').textContent, run: tr.querySelector('.col-run').textContent,
        detail: tr.querySelector('.col-detail').textContent}))""")


def test_the_sanity_section_names_the_missing_optional_backbone(page):
    assert any(f["kind"] == "skipped-backbone" and "resnet18" in f["detail"] for f in _findings(page))


def test_the_run_that_could_not_learn_is_flagged(page, study):
    _, store, plan = study
    frozen = next(r.run_id for r in plan.runs if r.method == "frozen-lr")
    flagged = {f["run"] for f in _findings(page) if f["kind"] in ("chance", "one-class", "flat-validation")}
    assert frozen in flagged, (store.get(frozen).accuracy, _findings(page))


def test_every_saved_model_classifies_the_outside_images(page, study):
    _, _, plan = study
    header = page.evaluate("[...document.querySelectorAll('#new-images-table thead th')].map(t => t.textContent)")
    assert header[0] == "image" and len(header) == 1 + len(plan.runs)
    assert all(any(r.run_id in h for h in header[1:]) for r in plan.runs)
    rows = page.evaluate("[...document.querySelectorAll('#new-images-table tbody tr')].length")
    assert rows == 3  # one outside image per class
    images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert len(images) >= 3 and all(complete and width > 0 for complete, width in images)
