"""Writing a report: ``report.html`` (self-contained) plus Markdown and CSV tables beside it.

The folder is written as a whole: every file goes into a hidden sibling folder, which
then takes the report folder's place. A full disk or a kill leaves the earlier report
whole (never new CSVs beside old HTML); a folder holding other files is never replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from ..errors import UserError
from ..storage import FolderLock, WriteError, folder_mode, write_failure
from .confusion import confusion_figure
from .curves import (accuracy_vs_axis, accuracy_vs_temperature, learning_curves, overlaid_axes, overlaid_curves,
                     swept_axes, train_accuracy_vs_axis)
from .gallery import misclassified
from .audit_section import audit_html, audit_markdown
from .bundles import SavedModels, model_path
from .html import Page
from .noise import add_uncertainty
from .plots import figure_uri
from .ranking import TAU_CSV, is_rank, ranking_html, ranking_markdown, ranking_sections, tau_csv_rows
from .records import RunRecord
from .sanity import FINDING_COLUMNS, finding_rows, sanity_findings
from .tables import (
    COMPARISON_COLUMNS,
    LABEL_COLUMNS,
    PAIR_COLUMNS,
    RUN_COLUMNS,
    comparison_rows,
    confused_pair_rows,
    group_by_setting,
    label_rows,
    markdown,
    markdown_text,
    run_rows,
    write_csv,
)
from .versus_probe import finetune_vs_probe

COMPARISON_CSV = ["method", "backbone", "setting", "runs", "accuracy_mean", "accuracy_std", "accuracy_low",
                  "accuracy_high", "interval_method", "p_vs_best", "within_noise", "epochs",
                  "seconds_per_epoch", "training_seconds", "frozen_seconds", "test_seconds_mean", "test_loss",
                  "inference_ms", "layers", "feature_dim", "trainable_parameters", "total_parameters", "ece_mean",
                  "ece_uncalibrated_mean", "tta_accuracy_mean", "run_ids"]
MAX_CURVES = 24
MAX_CONFUSION = 60
MAX_GALLERIES = 6


REPORT_FILES = ("comparison.csv", "runs.csv", "confused_pairs.csv", "ranking.csv", "report.md", "report.html")


def write_report(records: list[RunRecord], out: Path, title: str = "transferlab report", description: str = "",
                 images: bool = True, notes: list[str] = (), new_images: Path | None = None,
                 audit: dict | None = None, rank_scores: dict[str, list[str]] | None = None) -> dict[str, Path]:
    """Render ``records`` into ``out`` as a whole; returns the files written (html, markdown, csv tables).

    ``notes`` are the study plan's (skipped backbones are named in the sanity section);
    ``new_images`` is a folder of outside images for every saved model to classify; ``audit`` the summary of
    ``transferlab audit`` on the study's data (``report.audit_section.audit_summary``), shown as its own section;
    ``rank_scores`` the scores each rank method of the study names (``report.ranking``; default: all it measured).
    """
    out = Path(out)
    lock = FolderLock(out.parent, f".{out.name}.lock")
    try:
        lock.acquire(f"another report is being written into {out} now: wait for it, or choose another --out")
    except WriteError as exc:
        raise WriteError(f"cannot write the report folder {out}: {str(exc).rsplit(': ', 1)[-1]}") from None
    with lock:  # one writer at a time: the folder swap below is not safe against a second one
        return _write_report(records, out, title, description, images, notes, new_images, audit, rank_scores)


def _write_report(records, out: Path, title: str, description: str, images: bool, notes, new_images,
                  audit: dict | None = None, rank_scores: dict | None = None) -> dict:
    _recover(out)
    _check_replaceable(out)
    try:
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    except OSError as exc:
        raise WriteError(f"cannot write the report folder {out}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        written = _write_files(records, staging, title, description, images, list(notes), new_images, audit,
                               rank_scores)
        staging.chmod(folder_mode())  # mkdtemp makes it private; its files were created under the umask
        _swap_in(staging, out)
    except Exception as exc:
        if not write_failure(exc):
            raise
        reason = str(exc) if isinstance(exc, WriteError) else (getattr(exc, "strerror", None) or str(exc)).lower()
        raise WriteError(f"cannot write the report folder {out}: {reason}; the earlier report is unchanged") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {key: out / path.name for key, path in written.items()}


def _write_files(records, folder: Path, title: str, description: str, images: bool, notes: list[str],
                 new_images: Path | None, audit: dict | None = None, rank_scores: dict | None = None
                 ) -> dict[str, Path]:
    ranking = ranking_sections(records, rank_scores)
    status = _status_line(records)
    records = [r for r in records if not (is_rank(r) and r.done)]  # scores, not test accuracies: their own section
    done = [r for r in records if r.done]
    findings = finding_rows(sanity_findings(records, list(notes)))
    comparison = comparison_rows(records)
    noise = add_uncertainty(comparison, records)
    versus = finetune_vs_probe(comparison, records)
    runs = run_rows(records)
    pairs = confused_pair_rows(done)
    files = {
        "comparison_csv": write_csv(comparison, folder / "comparison.csv", COMPARISON_CSV),
        "runs_csv": write_csv(runs, folder / "runs.csv", [k for k, _ in RUN_COLUMNS]),
        "confused_pairs_csv": write_csv(pairs, folder / "confused_pairs.csv", [k for k, _ in PAIR_COLUMNS]),
    }
    if ranking:
        files["ranking_csv"] = write_csv(tau_csv_rows(ranking), folder / "ranking.csv", TAU_CSV)
    md = [f"# {markdown_text(title)}\n", f"{markdown_text(description)}\n" if description else "",
          status + "\n",
          "## Sanity checks\n", markdown(findings, FINDING_COLUMNS) if findings else "No run was flagged.\n",
          audit_markdown(audit) if audit else "",
          ranking_markdown(ranking) if ranking else "",
          "## Comparison\n", markdown(comparison, COMPARISON_COLUMNS),
          "\n\n".join(markdown_text(sentence) for sentence in noise + versus) + "\n" if noise + versus else "",
          "\n## Runs\n", markdown(runs, RUN_COLUMNS),
          "\n## Most-confused class pairs\n", markdown(pairs, PAIR_COLUMNS)]
    labels = label_rows(done)
    if labels:  # multi-label runs: their per-label figures
        md += ["\n## Per-label figures (multi-label runs)\n", markdown(labels, LABEL_COLUMNS)]
    files["markdown"] = folder / "report.md"
    files["markdown"].write_text("\n".join(part for part in md if part), encoding="utf-8")
    files["html"] = folder / "report.html"
    files["html"].write_text(_html(records, done, comparison, noise, runs, pairs, findings, title, description,
                                   images, new_images, versus, audit, ranking, status), encoding="utf-8")
    return files


def _old_copies(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.old-*")) if out.parent.is_dir() else []


def _recover(out: Path) -> None:
    """A kill between the two renames of ``_swap_in`` left the earlier report aside: put it back."""
    old = [aside / "report" for aside in _old_copies(out) if (aside / "report").is_dir()]
    if old and not out.exists():
        with contextlib.suppress(OSError):
            os.rename(old[-1], out)


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"report folder {out} is a file")
    try:
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES)
    except OSError as exc:
        raise UserError(f"cannot read folder {out}: {(exc.strerror or str(exc)).lower()}") from None
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"{out} holds files that are not part of a report ({shown}): choose another --out, "
                        "or an empty folder")


def _swap_in(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out``; an earlier ``out`` is set aside first and removed once the new one is there."""
    if not out.exists():
        os.rename(staging, out)
        return
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rename(out, aside / "report")  # a rename onto an empty folder's place would need it gone first
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(aside / "report", out)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _status_line(records: list[RunRecord]) -> str:
    counts = Counter(r.status for r in records)
    return f"{len(records)} runs: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _html(records, done, comparison, noise, runs, pairs, findings, title, description, images, new_images,
          versus=(), audit: dict | None = None, ranking=(), status: str | None = None) -> str:
    page = Page(title)
    models = SavedModels()  # each saved model loaded once for all the sections that draw from it
    if description:
        page.paragraph(description)
    page.paragraph(status or _status_line(records), "note")
    _sanity(page, findings)
    if audit:
        audit_html(page, audit)
    if ranking:
        ranking_html(page, ranking)
    if images:
        _samples(page, records)
    page.heading("Comparison", "comparison-section")
    page.paragraph("Test accuracy is the mean ± sample standard deviation over seeds (and folds) when a setting ran "
                   "with several. The 95% interval is the Wilson interval over the test images for one run, the "
                   "t-interval of the mean for several (the Wilson interval of their pooled predictions when they "
                   "agree exactly). 'vs best' compares each row with the best row tested on the same test images "
                   "with the same classes (rows of other class counts or other test images are never compared): "
                   "image by image, the exact McNemar test; p >= 0.05 is within noise. Probes "
                   "train only their head: their training time is the head fit plus feature extraction; parameters "
                   "are the head's / backbone + head.", "note")
    _comparison_tables(page, comparison, [(sentence, "noise") for sentence in noise] +
                       [(sentence, "versus-probe") for sentence in versus])

    for axis in swept_axes(done):
        figure = accuracy_vs_axis(done, axis)
        if figure is not None:
            page.heading(f"Accuracy vs {axis.replace('_', ' ')}", f"accuracy-vs-{axis}")
            page.figure(figure_uri(figure), f"test accuracy against {axis}: mean over seeds and folds, bars the 95% "
                                            "interval (Wilson for one run, t-interval of the mean for several)")
        trained = train_accuracy_vs_axis(done, axis)
        if trained is not None:
            page.figure(figure_uri(trained), f"final training accuracy (solid) and test accuracy (dashed) against "
                                             f"{axis}: mean ± std over seeds and folds")

    temperature = accuracy_vs_temperature(done)
    if temperature is not None:
        page.heading("Accuracy vs temperature", "accuracy-vs-temperature")
        page.figure(figure_uri(temperature), "maximum and final validation accuracy (and test accuracy) "
                                             "of a softmax layer on softmax(ImageNet logits / T)")

    _learning_curves(page, done)
    _overlaid_curves(page, done)
    _confusion(page, done, pairs)
    _reliability(page, done)
    if images:
        _misclassified(page, done)
        _interpretation(page, done, models)
        _filters(page, done, models)
    if new_images is not None:
        _outside_images(page, done, new_images, models)
    labels = label_rows(done)
    if labels:
        page.heading("Per-label figures (multi-label runs)", "labels-section")
        page.paragraph("Each label's average precision (ranking the test images by its probability) and F1 at the "
                       "run's threshold, tuned on the validation images; test accuracy is the subset accuracy "
                       "(every label of an image right).", "note")
        page.table(labels, LABEL_COLUMNS, "labels", numeric=("ap", "images", "mean_ap", "subset_accuracy"))
    page.heading("All runs", "runs-section")
    page.table(runs, RUN_COLUMNS, "runs", numeric=("accuracy", "macro_f1", "seconds", "seed", "fold"))
    _environment(page, done)
    return page.render()


COMPACT_COMPARISON = ("method", "backbone", "setting", "runs", "test_accuracy", "interval", "vs_best")


def _comparison_tables(page: Page, comparison: list[dict], sentences: list[tuple[str, str]]) -> None:
    """The comparison in two tables that fit the page: what was compared and how sure it is (each row's other
    figures on hover), the ``sentences`` (text, css class) that read it, then the costs and sizes of the same
    rows (the CSV and Markdown keep one table)."""
    main = [c for c in COMPARISON_COLUMNS if c[0] in COMPACT_COMPARISON]
    details = [c for c in COMPARISON_COLUMNS if c[0] not in COMPACT_COMPARISON
               and any(row.get(c[0]) not in (None, "") for row in comparison)]  # (TTA: only where it ran)
    numeric = ("runs", "inference_ms", "layers", "feature_dim")

    def hover(row: dict) -> str:
        return "; ".join(f"{title}: {row[key]}" for key, title in details if row.get(key) not in (None, ""))

    page.table(comparison, main, "comparison", numeric=numeric, row_title=hover)
    for text, css in sentences:
        page.paragraph(text, css)
    if details:
        page.paragraph("The same rows: training and inference time, loss, final training / validation accuracy and "
                       "model size.", "note")
        page.table(comparison, main[:3] + details, "comparison-details", numeric=numeric)


def _sanity(page: Page, findings: list[dict]) -> None:
    page.heading("Sanity checks", "sanity")
    if not findings:
        page.paragraph("No run was flagged: every finished run is above chance (one-sided binomial test), predicts "
                       "more than one class and has a validation curve that moved; no backbone was skipped.", "note")
        return
    page.paragraph("Read these before the tables: runs whose test accuracy is not above the most frequent class's "
                   "share (one-sided binomial test, p >= 0.05), models that predict one class for every test image, "
                   "validation curves that never moved, failed runs, runs whose stored result is not valid (left out "
                   "of the comparisons) and backbones the study left out.", "note")
    page.table(findings, FINDING_COLUMNS, "sanity-findings")


def _samples(page: Page, records: list[RunRecord]) -> None:
    from .samples import dataset_samples, samples_figure

    data = next((r.config.get("data") for r in records if r.config.get("data")), None)
    if data is None:
        return
    try:
        used = _classes_used(records)
        names, shown = dataset_samples(data, used)
    except Exception as exc:  # the data may have moved since the study ran: the report still renders
        page.paragraph(f"samples of {data} could not be drawn: {exc}", "note")
        return
    if not shown:
        return
    page.heading("Samples of the dataset", "samples")
    which = (f"each of the {len(names)} classes the study uses ({', '.join(shown)})"
             if used is not None and set(names) <= set(used) else "each class")
    more = f"; {len(names) - len(shown)} more classes are not shown" if len(names) > len(shown) else ""
    page.figure(figure_uri(samples_figure(shown)), f"{data}: the first images of {which}{more}")


def _classes_used(records: list[RunRecord]) -> list[str] | None:
    """The classes the study's runs used (``num_classes`` / ``classes`` keep fewer than the data has): every
    class a finished run was trained on, or the ``classes`` a run was given; None when nothing says."""
    used = {c for r in records if r.done for c in r.result.classes}
    used |= {c for r in records if not r.done for c in (r.config.get("classes") or [])}
    return sorted(used) if used else None


def _overlaid_curves(page: Page, done: list[RunRecord]) -> None:
    axes = overlaid_axes(done)
    if not axes:
        return
    page.heading("Validation curves side by side", "overlaid-curves")
    page.paragraph("Runs that differ in one swept value only (lowest seed), their validation accuracy per epoch on "
                   "one plot.", "note")
    shown = 0
    for axis in axes:
        for figure in overlaid_curves(done, axis):
            if shown < MAX_CURVES:
                page.figure(figure_uri(figure), f"validation accuracy per epoch by {axis.replace('_', ' ')}")
            shown += 1
    if shown > MAX_CURVES:
        page.paragraph(f"{shown - MAX_CURVES} more groups of curves are not drawn.", "note")


def _outside_images(page: Page, done: list[RunRecord], folder: Path, models: SavedModels) -> None:
    from .interpret import gradcam_uri
    from .outside import model_column, outside_predictions, prediction_rows, top_bars

    page.heading("Predictions on new images", "new-images")
    try:
        images, predictions, notes = outside_predictions(done, folder, models.get)
    except Exception as exc:  # an unreadable folder must not sink the report
        page.paragraph(f"the images in {folder} could not be classified: {exc}", "note")
        return
    for note in notes:
        page.paragraph(note, "note")
    if not predictions:
        page.paragraph("No finished run of this study saved a model (probes keep none): nothing to classify with.",
                       "note")
        return
    page.paragraph(f"{len(images)} images from {folder}, each saved model's top class and its probability.", "note")
    columns = [("image", "image")] + [(model_column(p), model_column(p)) for p in predictions]
    page.table(prediction_rows(images, predictions), columns, "new-images-table")
    best = predictions[0]
    page.paragraph(f"The most likely classes by the best model, {best.record.label()} (run {best.record.id}), "
                   "and beside them its Grad-CAM heat map for the top class: where in the image its evidence lies.",
                   "note")
    page.open_block("new-images-figures")
    failed = []
    for image in images:
        top = best.top.get(str(image))
        if not top:
            continue
        page.open_block(f"new-image-{images.index(image) + 1}", "beside")
        try:
            page.figure(figure_uri(top_bars(image, top, best.record.label())), image.name)
        except Exception as exc:  # a figure must not sink the report
            page.paragraph(f"{image.name}: the bars could not be drawn ({type(exc).__name__}: {exc})", "note")
        try:
            uri = gradcam_uri(models.get(best.record), image, top[0]["label"])
            page.figure(uri, f"Grad-CAM for {top[0]['label']}", alt=f"Grad-CAM of {image.name} for {top[0]['label']}",
                        css="gradcam")
        except Exception as exc:
            failed.append(f"{image.name} ({type(exc).__name__}: {exc})")
        page.close_block()
    page.close_block()
    if failed:
        page.paragraph(f"Grad-CAM could not be drawn for {len(failed)} images: " + "; ".join(failed[:3]), "note")


def _representatives(done: list[RunRecord]) -> list[RunRecord]:
    """The lowest-seed run of each method/backbone/setting."""
    return [min(group, key=lambda r: r.seed) for group in group_by_setting(done).values()]


def _learning_curves(page: Page, done: list[RunRecord]) -> None:
    with_history = [r for r in _representatives(done) if r.result.history]
    if not with_history:
        return
    page.heading("Learning curves", "learning-curves")
    page.paragraph("Training and validation loss and accuracy per epoch (lowest seed of each setting); the dotted "
                   "line marks where the second stage of two-stage fine-tuning starts.", "note")
    for record in with_history[:MAX_CURVES]:
        page.figure(figure_uri(learning_curves(record)), f"{record.label()} (run {record.id})")
    if len(with_history) > MAX_CURVES:
        page.paragraph(f"{len(with_history) - MAX_CURVES} more settings have histories (see the store).", "note")


def _confusion(page: Page, done: list[RunRecord], pairs: list[dict]) -> None:
    with_matrix = [r for r in done if r.result.confusion_matrix]
    if not with_matrix:
        return
    page.heading("Confusion matrices and most-confused pairs", "confusion")
    page.table(pairs, PAIR_COLUMNS, "confused-pairs", numeric=("count",))
    by_method: dict[str, list[RunRecord]] = {}
    for record in with_matrix[:MAX_CONFUSION]:
        by_method.setdefault(record.method, []).append(record)
    for method, group in by_method.items():
        page.open_details(f"{method}: {len(group)} confusion matrices", open_=len(with_matrix) <= 4)
        for record in group:
            figure = confusion_figure(record.result.confusion_matrix, record.result.classes,
                                      f"{record.label()} seed={record.seed}")
            page.figure(figure_uri(figure), f"run {record.id}: accuracy {record.result.accuracy_text()}")
        page.close_details()
    if len(with_matrix) > MAX_CONFUSION:
        page.paragraph(f"{len(with_matrix) - MAX_CONFUSION} more runs have confusion matrices (see the store).", "note")


def _reliability(page: Page, done: list[RunRecord]) -> None:
    """A reliability diagram per setting (its lowest seed's run), from the test probabilities' confidence bins."""
    from .reliability import reliability_figure

    shown = [r for r in _representatives(done) if r.result.reliability]
    if not shown:
        return
    page.heading("Calibration: reliability diagrams", "reliability")
    page.paragraph("Per bin of the top label's probability on the test images (15 equal-width bins): how often it "
                   "was right. Bars below the diagonal are overconfidence; ECE is the bins' gaps weighted by their "
                   "images (after temperature scaling for runs with calibrate).", "note")
    page.open_details(f"{len(shown)} reliability diagrams", open_=len(shown) <= 4)
    for record in shown[:MAX_CURVES]:
        page.figure(figure_uri(reliability_figure(record.result.reliability, record.label())),
                    f"run {record.id}: ECE {record.result.calibration_text()}")
    page.close_details()


def _misclassified(page: Page, done: list[RunRecord]) -> None:
    best: dict[tuple[str, str], RunRecord] = {}
    for record in done:
        key = (record.method, record.backbone)
        if key not in best or record.accuracy > best[key].accuracy:
            best[key] = record
    galleries = [(r, misclassified(r)) for r in list(best.values())[:MAX_GALLERIES]]
    galleries = [(r, t) for r, t in galleries if t]
    if not galleries:
        return
    page.heading("Misclassified test images", "misclassified")
    for record, thumbnails in galleries:
        page.paragraph(f"{record.label()} seed={record.seed} (run {record.id}, accuracy "
                       f"{record.result.accuracy_text()}): "
                       f"first {len(thumbnails)} mistakes")
        page.gallery(thumbnails)


def _interpretation(page: Page, done: list[RunRecord], models: SavedModels) -> None:
    """The best saved model's most confident mistakes (with Grad-CAM) and its top losses."""
    from .interpret import confident_mistakes, images_to_score, score_images, top_losses
    from .outside import saved_models

    saved = [r for r in saved_models(done) if r.result.predictions]
    if not saved:
        return
    best = saved[0]
    try:
        bundle = models.get(best)
        scored = score_images(bundle, images_to_score(best.result.predictions, bundle.classes))
    except Exception as exc:  # an unloadable model must not sink the report
        page.heading("Most confident mistakes", "confident-mistakes")
        page.paragraph(f"the saved model of run {best.id} could not score its test images: "
                       f"{type(exc).__name__}: {exc}", "note")
        return
    if not scored:
        page.heading("Most confident mistakes", "confident-mistakes")
        page.paragraph(f"none of the test images of run {best.id} is on disk as a readable file of a class its "
                       "saved model knows: nothing to score.", "note")
        return
    scope = (f"{best.label()} (run {best.id}, the best saved model), its {len(scored)} test images still on disk "
             f"scored again" + (f" (of {len(best.result.predictions)}, the stored mistakes first)"
                                if len(scored) < len(best.result.predictions) else ""))
    _confident_mistakes(page, bundle, confident_mistakes(scored), scope)
    _top_losses(page, top_losses(scored), scope)


def _confident_mistakes(page: Page, bundle, mistakes, scope: str) -> None:
    from .gallery import Card
    from .interpret import gradcam_uri

    page.heading("Most confident mistakes", "confident-mistakes")
    if not mistakes:
        page.paragraph(f"{scope}: no test image is predicted wrong.", "note")
        return
    page.paragraph(f"{scope}: the wrong predictions made with the highest probability, most confident first, each "
                   "with the Grad-CAM heat map of the predicted class (where the model saw its evidence).", "note")
    cards, failed = [], []
    for item in mistakes:
        try:
            uri = gradcam_uri(bundle, item.path, item.predicted)
        except Exception as exc:  # one image's heat map must not sink the report
            failed.append(f"{Path(item.path).name} ({type(exc).__name__}: {exc})")
            continue
        cards.append(Card(uri, f"Grad-CAM of {Path(item.path).name} for {item.predicted}", item.path,
                          [("true", f"true: {item.true}"), ("wrong", f"predicted: {item.predicted}"),
                           ("probability", f"p = {item.probability:.2f}")]))
    page.cards(cards, "confident-mistakes-gallery")
    if failed:
        page.paragraph(f"Grad-CAM could not be drawn for {len(failed)} images: " + "; ".join(failed[:3]), "note")


def _top_losses(page: Page, losses, scope: str) -> None:
    from .gallery import Card, thumbnail_uri
    from .pictures import find_picture, picture_rgb

    if not losses:
        return
    page.heading("Top losses", "top-losses")
    page.paragraph(f"{scope}: the test images with the highest loss (cross-entropy of the true class), highest "
                   "first, each with predicted / true class, loss and the probability of the true class.", "note")
    cards, failed = [], []
    for rank, item in enumerate(losses, 1):
        try:
            uri = thumbnail_uri(picture_rgb(find_picture(item.path)))
        except Exception as exc:
            failed.append(f"{Path(item.path).name} ({type(exc).__name__}: {exc})")
            continue
        cards.append(Card(uri, f"{rank}. predicted {item.predicted}, true {item.true}", item.path,
                          [("wrong" if item.wrong else "predicted", f"{item.predicted} / {item.true}"),
                           ("loss", f"loss {item.loss:.3f}"),
                           ("probability", f"p(true) = {item.true_probability:.2f}")]))
    page.cards(cards, "top-losses-gallery")
    if failed:
        page.paragraph(f"{len(failed)} images could not be shown: " + "; ".join(failed[:3]), "note")


def _filters(page: Page, done: list[RunRecord], models: SavedModels) -> None:
    """One set of figures per backbone: from the best run's saved model when one was saved, else the backbone."""
    from .filters import run_figures
    from .pictures import find_picture

    seen: dict[str, RunRecord] = {}
    for record in sorted(done, key=lambda r: (model_path(r) is None, -(r.accuracy or 0.0))):
        if record.kind == "scratch" and model_path(record) is None:
            continue  # its trained filters lived only in the model it did not save
        key = record.backbone + (" (random init)" if record.config.get("random_init") else "")
        seen.setdefault(key, record)
    sections = []
    for key, record in seen.items():
        pictures = (find_picture(p["path"]) for p in record.result.predictions)
        image = next((picture for picture in pictures if picture is not None), None)
        try:
            source, figures = run_figures(record, models, image)
        except Exception as exc:  # a figure must not sink the report
            sections.append((key, key, [], f"filters of {key} could not be drawn: {type(exc).__name__}: {exc}"))
            continue
        sections.append((key, f"{key}: {source}", figures, None))
    if not sections:
        return
    page.heading("First and last convolution: filters and activation maps", "filters")
    page.paragraph("Drawn from the weights a run ended with when it saved its model (fine-tuning changes them), "
                   "else from the backbone it started from; each caption says which.", "note")
    page.open_block("filters-figures")
    for key, heading, figures, note in sections:
        page.heading(heading, f"filters-{key}", level=3)
        if note:
            page.paragraph(note, "note")
        for caption, figure in figures:
            page.figure(figure_uri(figure), caption)
    page.close_block()


def _environment(page: Page, done: list[RunRecord]) -> None:
    environments = {json.dumps(r.environment, sort_keys=True) for r in done if r.environment}
    if not environments:
        return
    page.heading("Environment", "environment")
    for index, text in enumerate(sorted(environments)):
        rows = [{"key": k, "value": v} for k, v in json.loads(text).items()]
        page.table(rows, [("key", "what"), ("value", "value")], f"environment-{index + 1}")
