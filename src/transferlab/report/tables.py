"""The report's tables: the comparison table the lab reports hand-make, runs, most-confused pairs.

Figures come from the typed results (``ProbeResult``, ``FinetuneResult``); the rows
built from them are plain dicts, which ``markdown`` and ``write_csv`` render.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..finetune.result import FinetuneResult
from ..results import RunResult, pair_text
from ..stats import interval_text
from .records import RunRecord

COMPARISON_COLUMNS = [
    ("method", "method"), ("backbone", "backbone"), ("setting", "setting"), ("runs", "runs"),
    ("test_accuracy", "test accuracy"), ("interval", "95% interval"), ("vs_best", "vs best (McNemar)"),
    ("training", "training (epochs x s/epoch)"),
    ("training_total", "training total s (frozen part)"), ("test_seconds", "test set inference s"),
    ("inference_ms", "inference ms/image"), ("test_loss", "test loss"), ("final_accuracy", "final train / val acc"),
    ("ece", "ECE"), ("tta", "TTA acc. (gain)"),
    ("layers", "layers"), ("feature_dim", "feature dim"),
    ("parameters", "trainable / total parameters"),
]
RUN_COLUMNS = [
    ("id", "run"), ("method", "method"), ("backbone", "backbone"), ("setting", "setting"), ("seed", "seed"),
    ("fold", "fold"), ("status", "status"), ("accuracy", "test accuracy"), ("interval", "95% interval (Wilson)"),
    ("macro_f1", "macro F1"), ("ece", "ECE"), ("seconds", "run seconds"),
    ("error", "error"),
]
LABEL_COLUMNS = [("run", "run"), ("label", "method / backbone"), ("name", "label"), ("ap", "AP"),
                 ("f1", "F1 at threshold"), ("images", "test images"), ("mean_ap", "run mAP"),
                 ("subset_accuracy", "run subset accuracy")]
PAIR_COLUMNS = [("run", "run"), ("label", "method / backbone"), ("true", "true class"), ("predicted", "predicted as"),
                ("count", "images")]


def head_parameters(head: str, feature_dim: int, n_classes: int) -> int:
    """Trainable parameters of a probe head on ``feature_dim`` features (k-NN learns none)."""
    name, _, arg = head.partition(":")
    if name == "knn":
        return 0
    sizes = [feature_dim]
    if name == "mlp":
        sizes += [int(s) for s in arg.split(",") if s.strip()] if arg else [512, 256]
    sizes.append(n_classes)
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def parameter_counts(result: RunResult) -> tuple[int | None, int | None]:
    """(trainable, total) parameters: a fine-tuned model's own; a probe's head on top of its frozen backbone."""
    if isinstance(result, FinetuneResult):
        return result.trainable_parameters, result.total_parameters
    trainable = head_parameters(result.head, result.feature_dim, len(result.classes))
    return trainable, result.backbone_parameters + trainable


def training_cost(result: RunResult) -> tuple[int | None, float | None, str]:
    """(epochs, seconds per epoch, text) of the network's or the head's training (the frozen features are the
    training total's frozen part, not counted here)."""
    if isinstance(result, FinetuneResult):
        epochs, per_epoch = result.epochs_run, result.seconds_per_epoch
        return epochs, per_epoch, f"{epochs} x {per_epoch:.2f} s"
    fit = result.head_fit_seconds
    history = result.history
    if history:
        per_epoch = fit / len(history)
        return len(history), per_epoch, f"{len(history)} x {per_epoch:.3f} s"
    return None, None, f"fit {fit:.2f} s"


def mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def accuracy_text(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}" if len(values) > 1 else f"{mean:.3f}"


def group_by_setting(records: list[RunRecord], *drop: str) -> dict[tuple, list[RunRecord]]:
    """Finished runs grouped by method, backbone and swept values other than the seed (and ``drop``)."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.done:
            groups[(record.method, record.backbone, record.setting(*drop))].append(record)
    return dict(groups)


def comparison_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    for (method, backbone, setting), group in group_by_setting(records).items():
        first = group[0].result
        accuracies = [r.accuracy for r in group]
        mean, std = mean_std(accuracies)
        epochs, per_epoch, training = training_cost(first)
        if len(group) > 1 and epochs is not None:
            epochs = round(float(np.mean([training_cost(r.result)[0] for r in group])), 1)
            per_epoch = float(np.mean([training_cost(r.result)[1] for r in group]))
            training = f"{epochs:g} x {per_epoch:.2f} s (mean)"
        elif len(group) > 1:
            fit = np.mean([r.result.head_fit_seconds for r in group])
            training = f"fit {fit:.2f} s (mean)"
        trainable, total = parameter_counts(first)
        inference = float(np.nanmean([_number(r.result.inference_ms_per_image) for r in group]))
        rows.append({
            **totals_of([r.result for r in group]),
            "method": method, "backbone": backbone, "setting": group[0].setting_text(),
            "runs": len(group), "accuracy_mean": mean, "accuracy_std": std, "test_accuracy": accuracy_text(accuracies),
            "epochs": epochs, "seconds_per_epoch": per_epoch, "training": training,
            "inference_ms": round(inference, 2), "layers": first.backbone_layers,
            "feature_dim": first.feature_dim, "trainable_parameters": trainable, "total_parameters": total,
            "parameters": f"{trainable:,} / {total:,}" if trainable is not None else "",
            "run_ids": " ".join(r.id for r in group),
        })
    return rows


def totals_of(results: list[RunResult]) -> dict[str, Any]:
    """Whole training time (and its frozen part), whole-test-set inference, test loss and final train / val
    accuracy of a group of runs (means; blank where no run of the group recorded them). The times are sums of
    each run's phases (``timing``); features read from the cache are said to be, not shown as a time."""
    def mean(values: list[float | None]) -> float | None:
        values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        return float(np.mean(values)) if values else None

    total, frozen = mean([r.training_total() for r in results]), mean([r.frozen_seconds() for r in results])
    test_seconds = mean([r.test_total() for r in results])
    loss = mean([r.test_loss for r in results])
    train_acc, val_acc = mean([r.train_accuracy_final for r in results]), mean([r.val_accuracy_final for r in results])
    training = f"{total:.2f} s" if total is not None else ""
    if total is not None and all(r.frozen_from_cache() for r in results):
        training += " (frozen features from cache)"
    elif total is not None and frozen is not None:
        training += f" (frozen part {frozen:.2f} s)"
    cached_test = all(r.test_from_cache() for r in results)
    return {
        **calibration_and_tta(results),
        "training_seconds": total, "frozen_seconds": frozen, "test_seconds_mean": test_seconds,
        "training_total": training,
        "test_seconds": "from cache" if cached_test and test_seconds is not None
        else f"{test_seconds:.2f}" if test_seconds is not None else "",
        "test_loss": f"{loss:.3f}" if loss is not None else "",
        "final_accuracy": pair_text(train_acc, val_acc) if train_acc is not None or val_acc is not None else "",
    }


def calibration_and_tta(results: list[RunResult]) -> dict[str, Any]:
    """Mean test ECE (and before temperature scaling when calibrated), and mean accuracy with test-time augmentation
    beside the plain one's gain (blank where no run of the group recorded them)."""
    def mean(values: list[float | None]) -> float | None:
        values = [float(v) for v in values if v is not None]
        return float(np.mean(values)) if values else None

    ece, before = mean([r.ece for r in results]), mean([r.ece_uncalibrated for r in results])
    tta = [r for r in results if r.tta_accuracy is not None]
    tta_mean = mean([r.tta_accuracy for r in tta])
    gain = mean([r.tta_accuracy - r.accuracy for r in tta])
    return {
        "ece_mean": ece, "ece_uncalibrated_mean": before, "tta_accuracy_mean": tta_mean,
        "ece": "" if ece is None else f"{ece:.3f}" + (f" ({before:.3f})" if before is not None else ""),
        "tta": "" if tta_mean is None else f"{tta_mean:.4f} ({tta[0].tta} views, {gain:+.4f})",
    }


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def run_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    return [{
        "id": r.id, "method": r.method, "backbone": r.backbone, "setting": r.setting_text(), "seed": r.seed,
        "fold": r.fold, "status": r.status, "accuracy": f"{r.accuracy:.4f}" if r.done else "",
        "interval": interval_text(*r.result.interval()) if r.done else "",
        "macro_f1": f"{r.result.macro_f1:.4f}" if r.done else "",
        "ece": f"{r.result.ece:.4f}" if r.done and r.result.ece is not None else "",
        "seconds": f"{r.seconds:.1f}" if r.seconds is not None else "", "error": r.error or "",
    } for r in records]


def label_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per label of every finished multi-label run: its average precision, F1 at the run's threshold and test
    images with the label, beside the run's mean AP and subset accuracy (no rows for single-label runs)."""
    rows = []
    for r in records:
        if not (r.done and r.result.multi_label):
            continue
        mean_ap = r.result.mean_average_precision
        for name, scores in r.result.label_scores.items():
            rows.append({"run": r.id, "label": r.label(), "name": name,
                         "ap": "" if scores.get("ap") is None else f"{scores['ap']:.3f}",
                         "f1": f"{scores['f1']:.3f} (at {r.result.threshold:.2f})", "images": scores["images"],
                         "mean_ap": "" if mean_ap is None else f"{mean_ap:.3f}",
                         "subset_accuracy": f"{r.result.accuracy:.4f}"})
    return rows


def confused_pairs(matrix: list[list[int]], classes: list[str], top: int = 3) -> list[tuple[str, str, int]]:
    """The ``top`` off-diagonal cells: (true class, predicted class, images), most first."""
    pairs = [(classes[i], classes[j], int(count)) for i, row in enumerate(matrix) for j, count in enumerate(row)
             if i != j and count > 0]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))[:top]


def confused_pair_rows(records: list[RunRecord], top: int = 3) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.done and r.result.confusion_matrix:
            for true, predicted, count in confused_pairs(r.result.confusion_matrix, r.result.classes, top):
                rows.append({"run": r.id, "label": r.label(), "true": true, "predicted": predicted, "count": count})
    return rows


# Characters Markdown gives a meaning to (a name like "__init__" or "[x](y)" must show as written).
MARKDOWN_SPECIAL = "\\`*_{}[]()#+!|~"


def markdown_text(value: Any) -> str:
    """``value`` as literal Markdown text: ``&`` and ``<`` as entities (no tag of a name reaches a viewer), Markdown
    specials backslash-escaped (a ``>`` only where it would start a quote: "p >= 0.05" stays readable), on one
    line."""
    text = ("" if value is None else str(value)).replace("&", "&amp;").replace("<", "&lt;")
    text = "".join("\\" + ch if ch in MARKDOWN_SPECIAL else ch for ch in text)
    text = text.replace("\r", " ").replace("\n", " ")
    return "\\" + text if text.startswith(">") else text


def markdown(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(markdown_text(title) for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(markdown_text(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text that would start a formula gets a leading ``'``;
    numbers, and text that is a plain number ("-0.5"), stay as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_csv(rows: list[dict[str, Any]], path: Path, keys: list[str] | None = None) -> Path:
    keys = keys or (list(rows[0]) if rows else [])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return path
