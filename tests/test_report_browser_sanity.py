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
        files = write_report(records_for_plan(store, plan), tmp / "report", title="sanity study", images=True,
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


def _decoded(page, selector: str) -> list[list]:
    """[complete, naturalWidth] of every image matching ``selector``: a decoded image has a width."""
    return page.evaluate(f"[...document.querySelectorAll({selector!r})].map(i => [i.complete, i.naturalWidth])")


def _best_saved_run(store, plan) -> str:
    return max((store.get(r.run_id) for r in plan.runs), key=lambda row: row.result.accuracy).id


def test_each_outside_image_has_its_grad_cam_beside_its_bars(page):
    blocks = page.evaluate("""[...document.querySelectorAll('#new-images-figures .beside')].map(b => ({
        images: b.querySelectorAll('img').length, cams: b.querySelectorAll('img.gradcam').length,
        alt: (b.querySelector('img.gradcam') || {}).alt}))""")
    assert len(blocks) == 3, blocks  # one outside image per class
    assert all(b["images"] == 2 and b["cams"] == 1 and b["alt"].startswith("Grad-CAM") for b in blocks), blocks
    cams = _decoded(page, "#new-images-figures img.gradcam")
    assert len(cams) == 3 and all(complete and width > 0 for complete, width in cams)


def test_the_most_confident_mistakes_show_decoded_grad_cams(page, study):
    _, store, plan = study
    best = store.get(_best_saved_run(store, plan))
    wrong = sum(p["true"] != p["predicted"] for p in best.result.predictions)
    assert wrong > 0, "the fixture's best model must make mistakes for this check to mean anything"
    cams = _decoded(page, "#confident-mistakes-gallery img")
    assert 0 < len(cams) <= 8 and all(complete and width > 0 for complete, width in cams)
    alts = page.evaluate("[...document.querySelectorAll('#confident-mistakes-gallery img')].map(i => i.alt)")
    assert all(a.startswith("Grad-CAM") for a in alts)
    shown = page.evaluate("""[...document.querySelectorAll('#confident-mistakes-gallery figcaption')].map(c => [
        c.querySelector('.true').textContent.slice(6), c.querySelector('.wrong').textContent.slice(11),
        parseFloat(c.querySelector('.probability').textContent.slice(4))])""")
    assert all(true != predicted for true, predicted, _ in shown), shown
    assert [p for _, _, p in shown] == sorted((p for _, _, p in shown), reverse=True), shown


def test_the_top_losses_grid_is_ordered_by_loss(page):
    losses = page.evaluate("""[...document.querySelectorAll('#top-losses-gallery .loss')]
        .map(s => parseFloat(s.textContent.replace('loss ', '')))""")
    assert len(losses) >= 2 and all(loss >= 0 for loss in losses), losses
    assert all(a >= b for a, b in zip(losses, losses[1:])), losses
    thumbnails = _decoded(page, "#top-losses-gallery img")
    assert len(thumbnails) == len(losses) and all(complete and width > 0 for complete, width in thumbnails)


def test_the_filters_are_captioned_as_the_best_runs_fine_tuned_weights(page, study):
    _, store, plan = study
    captions = page.evaluate("[...document.querySelectorAll('#filters-figures figcaption')].map(c => c.textContent)")
    assert captions and all(c.startswith(f"fine-tuned weights of run {_best_saved_run(store, plan)}")
                            for c in captions), captions
    assert any("activation maps" in c for c in captions)
