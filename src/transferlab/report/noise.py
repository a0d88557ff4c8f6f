"""Which figures of the comparison table are within noise: an interval per row, a paired test against the best.

Each row (a method/backbone/setting, over its seeds and folds) gets a 95% interval: the
Wilson interval over its test images for one run, the t-interval of the mean for several.
Within each setting (the values of the axes every row has, e.g. ``per_class``; a method's own axes such
as ``temperature`` tell its rows apart), every row is compared with the best row image by image: the exact
McNemar test on the predictions of the same test images (same image, same seed and fold).
A difference with p >= 0.05 is within noise; rows that share no test images with the best
are said to be not compared rather than tested.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..stats import (ACCURACY, NOISE_LEVEL, McNemar, interval_text, mcnemar_exact, mean_interval, p_text,
                     wilson_interval)
from ..study.axes import setting_text
from .records import RunRecord
from .tables import group_by_setting


def row_interval(group: list[RunRecord]) -> tuple[float, float, str]:
    """(low, high, how): Wilson for one run, the t-interval of the mean over several; when the runs agree
    exactly (std 0, a zero-width t-interval) the Wilson interval of all their test predictions pooled."""
    if len(group) == 1:
        low, high = group[0].result.interval()
        return low, high, "Wilson"
    summary = mean_interval([r.accuracy for r in group], bounds=ACCURACY)
    if summary.std > 0:
        return summary.low, summary.high, "t"
    low, high = wilson_interval(sum(r.result.correct_count for r in group), sum(r.result.test_images for r in group))
    return low, high, "Wilson pooled"


def paired_correctness(group: list[RunRecord]) -> dict[tuple, bool]:
    """Per-image correctness of a row's runs, keyed by (seed, fold, image path): what pairs two rows."""
    correct = {}
    for record in group:
        for p in record.result.predictions:
            correct[(record.seed, record.fold, p["path"])] = p["true"] == p["predicted"]
    return correct


@dataclass
class Comparison:
    """A row against the best row of its setting: the test, or why there is none."""

    test: McNemar | None
    images: int  # distinct test images among the pairs
    seeds: int = 0  # distinct seeds among the pairs
    reason: str = ""  # why not compared

    @property
    def within_noise(self) -> bool | None:
        return None if self.test is None else self.test.within_noise

    def shared_text(self) -> str:
        if self.test is None:
            return ""
        if self.test.n == self.images:
            return f"{self.images} shared test images"
        return f"{self.test.n} paired test predictions over {self.seeds} seeds"


def compare(row: dict[tuple, bool], best: dict[tuple, bool]) -> Comparison:
    if not row or not best:
        return Comparison(None, 0, reason="no per-image predictions stored")
    shared = sorted(set(row) & set(best))
    if not shared:
        return Comparison(None, 0, reason="no shared test images")
    test = mcnemar_exact([row[k] for k in shared], [best[k] for k in shared])
    return Comparison(test, len({k[2] for k in shared}), len({k[0] for k in shared}))


def add_uncertainty(rows: list[dict[str, Any]], records: list[RunRecord]) -> list[str]:
    """Add each comparison row's interval and its test against the best of its setting (in place); the
    sentences that say which rows are indistinguishable from the best."""
    grouped = group_by_setting(records)
    groups = list(grouped.values())
    if len(groups) != len(rows):
        raise ValueError("rows and groups differ: add_uncertainty takes the rows comparison_rows made of records")
    for row, group in zip(rows, groups):
        low, high, how = row_interval(group)
        row.update(accuracy_low=low, accuracy_high=high, interval_method=how,
                   interval=interval_text(low, high) + (f" ({how}, {len(group)} runs)" if len(group) > 1 else ""))
    settings = [dict(setting) for _, _, setting in grouped]
    common = set.intersection(*(set(s) for s in settings)) if settings else set()
    by_setting: dict[str, list[int]] = defaultdict(list)
    names = []
    for index, setting in enumerate(settings):  # rows compete within the values of the axes every row has
        by_setting[setting_text({k: v for k, v in setting.items() if k in common})].append(index)
        own = setting_text({k: v for k, v in setting.items() if k not in common})
        names.append(f"{rows[index]['method']} / {rows[index]['backbone']}" + (f" [{own}]" if own else ""))
    sentences = []
    for setting, members in by_setting.items():
        if len(members) < 2:
            for i in members:
                rows[i].update(vs_best="", p_vs_best=None, within_noise=None)
            continue
        best = max(members, key=lambda i: rows[i]["accuracy_mean"])
        best_correct = paired_correctness(groups[best])
        rows[best].update(vs_best="best", p_vs_best=None, within_noise=None)
        results = {}
        for i in members:
            if i == best:
                continue
            comparison = compare(paired_correctness(groups[i]), best_correct)
            results[i] = comparison
            if comparison.test is None:
                rows[i].update(vs_best=f"not compared: {comparison.reason}", p_vs_best=None, within_noise=None)
            else:
                verdict = "within noise" if comparison.within_noise else "different"
                rows[i].update(vs_best=f"{p_text(comparison.test.p_value)}, {verdict}",
                               p_vs_best=comparison.test.p_value, within_noise=comparison.within_noise,
                               shared_images=comparison.images)
        sentences.append(noise_sentence(setting, names[best], {names[i]: c for i, c in results.items()}))
    return sentences


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _shared(comparisons: list[Comparison]) -> str:
    texts = sorted({c.shared_text() for c in comparisons})
    if len(texts) == 1:
        return texts[0]
    counts = [c.test.n for c in comparisons if c.test is not None]
    return f"{min(counts)} to {max(counts)} paired test predictions"


def noise_sentence(setting: str, best: str, comparisons: dict[str, Comparison]) -> str:
    """One sentence: which methods are indistinguishable from the best (and which were not compared)."""
    prefix = f"At {setting}: " if setting else ""
    same = [n for n, c in comparisons.items() if c.within_noise is True]
    different = [n for n, c in comparisons.items() if c.within_noise is False]
    untested = [n for n, c in comparisons.items() if c.test is None]
    parts = []
    tested = [c for c in comparisons.values() if c.test is not None]
    if same:
        verb = "is" if len(same) == 1 else "are"
        parts.append(f"{_join(same)} {verb} indistinguishable from the best, {best} (McNemar exact, "
                     f"p >= {NOISE_LEVEL:g} on {_shared(tested)})")
    elif different:
        parts.append(f"no method is within noise of the best, {best} (McNemar exact, p < {NOISE_LEVEL:g} "
                     f"for each on {_shared(tested)})")
    if untested:
        reasons = sorted({comparisons[n].reason for n in untested})
        parts.append(f"{_join(untested)} {'was' if len(untested) == 1 else 'were'} not compared with the best, "
                     f"{best}: {'; '.join(reasons)}")
    text = "; ".join(parts)
    return prefix + text[0].upper() + text[1:] + "." if not prefix else prefix + text + "."
