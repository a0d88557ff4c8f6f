"""Sanity checks of a study's runs: what a reader must know before trusting a table.

A run that did not learn looks like any other row in a comparison table. These
checks name the runs whose test accuracy is not above chance, the models that
predict one class for every test image, the validation curves that never moved,
and the backbones a study left out (an optional backbone with no weights here).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .records import RunRecord

SIGNIFICANCE = 0.05  # one-sided binomial test of the accuracy against the chance rate
FLAT_MIN_EPOCHS = 3


@dataclass(frozen=True)
class Finding:
    """One thing a reader should know: which run (or None for the study), what kind, and why."""

    kind: str  # chance, one-class, flat-validation, skipped-backbone, failed, invalid (a stored result)
    run_id: str | None
    label: str
    detail: str


def chance_rate(record: RunRecord) -> float | None:
    """Accuracy of always predicting the test set's most frequent class (1/K for a balanced set)."""
    matrix = record.result.confusion_matrix if record.result is not None else []
    totals = [sum(row) for row in matrix]
    if not totals or sum(totals) == 0:
        return None
    return max(totals) / sum(totals)


def not_above_chance(record: RunRecord) -> str | None:
    """Why the run's accuracy is indistinguishable from chance, or None when it is clearly above it."""
    from scipy.stats import binomtest

    rate = chance_rate(record)
    n = record.result.test_images if record.result is not None else 0
    if rate is None or not n or rate >= 1.0:
        return None
    correct = round(record.accuracy * n)
    p = binomtest(correct, n, rate, alternative="greater").pvalue
    if p < SIGNIFICANCE:
        return None
    return (f"test accuracy {record.accuracy:.3f} ({correct}/{n}) is not above chance {rate:.3f} "
            f"(the most frequent class's share; one-sided binomial p = {p:.2f})")


def one_class(record: RunRecord) -> str | None:
    """The class predicted for every test image, when there is only one."""
    predicted = Counter(p["predicted"] for p in record.result.predictions) if record.result is not None else Counter()
    if len(predicted) == 1 and len(record.result.classes) > 1:
        (name, count), = predicted.items()
        return f"predicts {name!r} for all {count} test images"
    return None


def flat_validation(record: RunRecord) -> str | None:
    """A validation accuracy that stayed the same over every epoch (nothing was learnt, or the set is tiny)."""
    values = [h["val_accuracy"] for h in (record.result.history if record.result is not None else [])
              if h.get("val_accuracy") is not None]
    if len(values) < FLAT_MIN_EPOCHS or max(values) - min(values) > 1e-12:
        return None
    return f"validation accuracy stayed at {values[0]:.3f} for all {len(values)} epochs"


CHECKS = (("chance", not_above_chance), ("one-class", one_class), ("flat-validation", flat_validation))


def sanity_findings(records: list[RunRecord], notes: list[str] = ()) -> list[Finding]:
    """Every finding for ``records``, study-level ones (skipped backbones, failed runs) first."""
    findings = [Finding("skipped-backbone", None, "study", note) for note in notes if note.startswith("skipped")]
    findings += [Finding("failed", r.id, r.label(), r.error or "failed") for r in records if r.status == "failed"]
    findings += [Finding("invalid", r.id, r.label(), r.error or "invalid") for r in records if r.status == "invalid"]
    for record in records:
        if not record.done:
            continue
        for kind, check in CHECKS:
            detail = check(record)
            if detail:
                findings.append(Finding(kind, record.id, record.label(), detail))
    return findings


FINDING_COLUMNS = [("kind", "check"), ("run", "run"), ("label", "method / backbone [setting]"), ("detail", "finding")]


def finding_rows(findings: list[Finding]) -> list[dict]:
    return [{"kind": f.kind, "run": f.run_id or "", "label": f.label, "detail": f.detail} for f in findings]
