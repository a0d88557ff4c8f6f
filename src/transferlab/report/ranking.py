"""The report's "Ranking before training" section: a study's ``rank`` methods' scores of each backbone's
candidates beside the test accuracy the study's other methods measured on the same backbone, and Kendall's tau
of each score against each measured method over the backbones: did the scores, computed in seconds from frozen
features, order the backbones as training did?

A backbone's score is its best candidate's (the layer and pooling a user would pick by it), each candidate's
score the mean over the rank method's runs on that backbone (seeds, settings); a method's accuracy on a
backbone is the mean over its finished runs there.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..rank.config import SCORES
from ..rank.result import kendall_tau
from .html import Page
from .records import RunRecord
from .tables import markdown, markdown_text

SCORE_TITLES = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "knn_accuracy": "kNN val. acc.",
                "logreg_accuracy": "logreg val. acc."}
TAU_COLUMNS = [("method", "rank method"), ("score", "score"), ("measured", "measured method"),
               ("backbones", "backbones (n)"), ("tau", "Kendall's tau"), ("note", "note")]
TAU_CSV = ["method", "score", "measured", "backbones", "tau", "note"]


def is_rank(record: RunRecord) -> bool:
    return record.kind == "rank"


def ranking_sections(records: list[RunRecord], scores_of: dict[str, list[str]] | None = None) -> list[dict]:
    """One section per rank method with a finished run: its candidate rows, their columns and its tau rows.

    ``scores_of``: the scores each rank method's study entry names (default: every score its runs measured).
    """
    measured = [r for r in records if r.done and not is_rank(r)]
    accuracy = _accuracy_by_backbone(measured)
    sections = []
    for method, runs in _by_method([r for r in records if r.done and is_rank(r)]).items():
        scores = (scores_of or {}).get(method) or [s for s in SCORES if any(
            getattr(c, s) is not None for r in runs for c in r.result.candidates)]
        best = _best_by_backbone(runs, scores)
        columns = [("backbone", "backbone"), ("setting", "setting"), ("layer", "layer"), ("pooling", "pooling"),
                   ("dim", "dim")] + [(s, SCORE_TITLES[s]) for s in scores]
        columns += [(f"accuracy:{m}", f"{m} test acc.") for m in accuracy]
        rows = []
        for run in runs:
            for c in run.result.candidates:
                row = {"backbone": run.backbone, "setting": run.setting_text(), "layer": c.layer,
                       "pooling": c.pooling, "dim": c.dim}
                row.update({s: _number(getattr(c, s)) for s in scores})
                row.update({f"accuracy:{m}": _number(by.get(run.backbone)) for m, by in accuracy.items()})
                rows.append(row)
        if not any(row.get("setting") for row in rows):
            columns = [c for c in columns if c[0] != "setting"]
        taus = [_tau_row(method, s, m, best.get(s, {}), by) for s in scores for m, by in accuracy.items()]
        sections.append({"method": method, "columns": columns, "rows": rows, "taus": taus,
                         "backbones": sorted({r.backbone for r in runs})})
    return sections


def _by_method(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    grouped: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        grouped[record.method].append(record)
    return dict(grouped)


def _accuracy_by_backbone(measured: list[RunRecord]) -> dict[str, dict[str, float]]:
    """{method: {backbone: mean test accuracy of its finished runs there}}, methods in the report's order."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in measured:
        values[record.method][record.backbone].append(record.accuracy)
    return {m: {b: sum(v) / len(v) for b, v in by.items()} for m, by in values.items()}


def _best_by_backbone(runs: list[RunRecord], scores: list[str]) -> dict[str, dict[str, float]]:
    """{score: {backbone: its best candidate's score}}, a candidate's score the mean over the method's runs."""
    values: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        for c in run.result.candidates:
            for s in scores:
                if getattr(c, s) is not None:
                    values[(s, run.backbone, c.layer, c.pooling)].append(getattr(c, s))
    best: dict[str, dict[str, float]] = defaultdict(dict)
    for (s, backbone, _, _), v in values.items():
        mean = sum(v) / len(v)
        best[s][backbone] = max(best[s].get(backbone, mean), mean)
    return best


def _tau_row(method: str, score: str, measured: str, scores: dict[str, float], accuracy: dict[str, float]) -> dict:
    both = sorted(set(scores) & set(accuracy))
    pairs = [(scores[b], accuracy[b]) for b in both]
    tau = kendall_tau(pairs)
    note = ""
    if tau is None:
        note = (f"undefined: {len(pairs)} backbone(s) with both values, tau needs 3 or more" if len(pairs) < 3
                else "undefined: every backbone has the same " + ("score" if len({a for a, _ in pairs}) == 1
                                                                   else "accuracy"))
    return {"method": method, "score": score, "measured": measured, "backbones": len(pairs),
            "tau": tau, "tau_text": "-" if tau is None else f"{tau:.3f}", "note": note}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _intro(section: dict) -> str:
    return (f"Rank method {section['method']!r} scored {len(section['rows'])} candidates (backbone x layer x "
            f"pooling) on {len(section['backbones'])} backbone(s) from frozen features, before training (kNN and "
            "logreg accuracies on a validation split carved from the training images); beside them, the test "
            "accuracy each other method of the study measured on the same backbone (mean over its runs). Kendall's "
            "tau (scipy's tau-b) compares, over the backbones, each score (a backbone's best candidate) with each "
            "measured accuracy.")


def tau_csv_rows(sections: list[dict]) -> list[dict[str, Any]]:
    return [{**row, "tau": "" if row["tau"] is None else row["tau"]} for s in sections for row in s["taus"]]


def ranking_markdown(sections: list[dict]) -> str:
    parts = ["## Ranking before training\n"]
    for section in sections:
        parts += [markdown_text(_intro(section)) + "\n", markdown(section["rows"], section["columns"])]
        if section["taus"]:
            parts.append(markdown([{**t, "tau": t["tau_text"]} for t in section["taus"]], TAU_COLUMNS))
        else:
            parts.append("No other method of the study finished a run on these backbones: nothing to compare.\n")
    return "\n".join(parts)


def ranking_html(page: Page, sections: list[dict]) -> None:
    page.heading("Ranking before training", "ranking")
    for index, section in enumerate(sections, 1):
        page.paragraph(_intro(section), "note")
        numeric = tuple(key for key, _ in section["columns"] if key not in ("backbone", "setting", "layer", "pooling"))
        page.table(section["rows"], section["columns"], f"ranking-{index}", numeric=numeric)
        if section["taus"]:
            page.table([{**t, "tau": t["tau_text"]} for t in section["taus"]], TAU_COLUMNS, f"ranking-tau-{index}",
                       numeric=("backbones", "tau"))
        else:
            page.paragraph("No other method of the study finished a run on these backbones: nothing to compare.",
                           "note")
