"""Which figures of the comparison table are within noise: an interval per row, a paired test against the best.

Each row (a method/backbone/setting, over its seeds and folds) gets a 95% interval: the
Wilson interval over its test images for one run, the t-interval of the mean for several.
A paired test means something only between runs evaluated on the same test images with the
same classes, so rows compete within a *test-set group*: the rows of one setting (the values
of the axes every row has, e.g. ``per_class``; a method's own axes such as ``temperature``
tell its rows apart) that were tested on the same images of the same classes (a 3-class run
and a 5-class run share images of three classes, yet answer different questions). Every row
is compared with the best row of its group image by image: the exact McNemar test on the
predictions of the same test images (same image, same seed and fold, only where the two runs'
test sets are the same). A difference with p >= 0.05 is within noise; a row alone on its test
set, or with no stored predictions, is said to be not compared rather than tested.
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


TestedOn = dict[tuple, tuple]  # (seed, fold) -> (the run's classes, the paths of its test images)


def tested_on(group: list[RunRecord]) -> TestedOn:
    """What each run of a row was tested on: its classes and its test images, by (seed, fold); runs that stored
    no per-image predictions are left out (their test set is unknown)."""
    return {(r.seed, r.fold): (tuple(r.result.classes), frozenset(p["path"] for p in r.result.predictions))
            for r in group if r.result.predictions}


def same_test_set(a: TestedOn, b: TestedOn) -> set[tuple]:
    """The (seed, fold)s on which two rows were tested on the same images with the same classes."""
    return {k for k in a.keys() & b.keys() if a[k] == b[k]}


def comparable(a: TestedOn, b: TestedOn) -> bool:
    """Two rows share a test set: the same images and classes on every (seed, fold) both ran, at least one."""
    shared = a.keys() & b.keys()
    return bool(shared) and all(a[k] == b[k] for k in shared)


def split_by_test_set(members: list[int], sets: list[TestedOn]) -> list[list[int]]:
    """``members`` split into groups of rows on the same test set (joined when comparable, transitively); a row
    with no stored predictions stays alone."""
    groups: list[list[int]] = []
    for i in members:
        joined = [g for g in groups if any(comparable(sets[i], sets[j]) for j in g)]
        apart = [g for g in groups if all(g is not j for j in joined)]
        groups = apart + [sorted([i, *(k for g in joined for k in g)])]
    return sorted(groups, key=min)


def describe_tested_on(sets: TestedOn) -> str:
    """``3 classes (ant, bee, wasp), 24 test images``: what a group of rows was tested on."""
    classes = next(iter(sets.values()))[0]
    images = sorted({len(paths) for _, paths in sets.values()})
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    count = f"{images[0]}" if len(images) == 1 else f"{images[0]} to {images[-1]}"
    return f"{len(classes)} classes ({shown}), {count} test images" + (" per run" if len(sets) > 1 else "")


@dataclass
class Comparison:
    """A row against the best row of its test-set group: the test, or why there is none."""

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


def compare(row: dict[tuple, bool], best: dict[tuple, bool], on: set[tuple] | None = None) -> Comparison:
    """McNemar of ``row`` against ``best`` on the images both predicted, within the (seed, fold)s ``on`` (where their
    test sets are the same; all when None)."""
    if not row or not best:
        return Comparison(None, 0, reason="no per-image predictions stored")
    shared = sorted(k for k in set(row) & set(best) if on is None or k[:2] in on)
    if not shared:
        return Comparison(None, 0, reason="no shared test images")
    test = mcnemar_exact([row[k] for k in shared], [best[k] for k in shared])
    return Comparison(test, len({k[2] for k in shared}), len({k[0] for k in shared}))


@dataclass
class CompetingRows:
    """Rows of one setting tested on the same images with the same classes: they compete with each other."""

    members: list[int]  # indices into the comparison rows
    where: str  # ``At per_class=8`` (with the test set when the setting has several), or ""
    names: dict[int, str]  # each member's label within the group
    alone: bool = False  # the only row on its test set while its setting has other rows


def competing_groups(rows: list[dict[str, Any]], records: list[RunRecord]) -> tuple[list[CompetingRows], list]:
    """(the test-set groups of the comparison rows, each row's runs): rows compete within the values of the axes
    every row has, and only with rows tested on the same images with the same classes."""
    grouped = group_by_setting(records)
    groups = list(grouped.values())
    if len(groups) != len(rows):
        raise ValueError("rows and groups differ: the rows must be the ones comparison_rows made of records")
    settings = [dict(setting) for _, _, setting in grouped]
    common = set.intersection(*(set(s) for s in settings)) if settings else set()
    by_setting: dict[tuple, list[int]] = defaultdict(list)
    for index, setting in enumerate(settings):
        by_setting[tuple((k, v) for k, v in setting.items() if k in common)].append(index)
    sets = [tested_on(g) for g in groups]
    result = []
    for members in by_setting.values():
        parts = split_by_test_set(members, sets)
        for part in parts:
            shared = {k: v for k, v in settings[part[0]].items()
                      if all(k in settings[i] and settings[i][k] == v for i in part)}
            where = [f"at {setting_text(shared)}"] if shared else []
            if len(parts) > 1 and len(part) > 1:  # which test set; a row alone says why instead
                where.append("on " + describe_tested_on(sets[part[0]]))
            names = {}
            for i in part:
                own = setting_text({k: v for k, v in settings[i].items() if k not in shared})
                names[i] = f"{rows[i]['method']} / {rows[i]['backbone']}" + (f" [{own}]" if own else "")
            text = ", ".join(where)
            result.append(CompetingRows(part, text[:1].upper() + text[1:], names, len(part) == 1 < len(members)))
    return result, groups


def add_uncertainty(rows: list[dict[str, Any]], records: list[RunRecord]) -> list[str]:
    """Add each comparison row's interval and its test against the best of its test-set group (in place); the
    sentences that say, per group, which rows are indistinguishable from the best."""
    competing, groups = competing_groups(rows, records)
    for row, group in zip(rows, groups):
        low, high, how = row_interval(group)
        row.update(accuracy_low=low, accuracy_high=high, interval_method=how,
                   interval=interval_text(low, high) + (f" ({how}, {len(group)} runs)" if len(group) > 1 else ""),
                   vs_best="", p_vs_best=None, within_noise=None)
    sets = [tested_on(g) for g in groups]
    sentences = []
    for test_set in competing:
        members, names = test_set.members, test_set.names
        if test_set.alone:
            i = members[0]
            reason = "no per-image predictions stored" if not sets[i] else "no other row has its test set"
            rows[i].update(vs_best=f"not compared: {reason}")
            sentences.append(f"{test_set.where}: {names[i]} was not compared with any other row: {reason}."
                             if test_set.where else f"{names[i]} was not compared with any other row: {reason}.")
            continue
        if len(members) < 2:
            continue
        best = max(members, key=lambda i: rows[i]["accuracy_mean"])
        best_correct = paired_correctness(groups[best])
        rows[best].update(vs_best="best")
        results = {}
        for i in members:
            if i == best:
                continue
            comparison = compare(paired_correctness(groups[i]), best_correct, same_test_set(sets[i], sets[best]))
            results[i] = comparison
            if comparison.test is None:
                rows[i].update(vs_best=f"not compared: {comparison.reason}")
            else:
                verdict = "within noise" if comparison.within_noise else "different"
                rows[i].update(vs_best=f"{p_text(comparison.test.p_value)}, {verdict}",
                               p_vs_best=comparison.test.p_value, within_noise=comparison.within_noise,
                               shared_images=comparison.images)
        sentences.append(noise_sentence(test_set.where, names[best], {names[i]: c for i, c in results.items()}))
    return sentences


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _shared(comparisons: list[Comparison]) -> str:
    texts = sorted({c.shared_text() for c in comparisons})
    if len(texts) == 1:
        return texts[0]
    counts = [c.test.n for c in comparisons if c.test is not None]
    return f"{min(counts)} to {max(counts)} paired test predictions"


def noise_sentence(where: str, best: str, comparisons: dict[str, Comparison]) -> str:
    """One sentence: which methods are indistinguishable from the best (and which were not compared); ``where``
    (``At per_class=8``) says which setting and test set."""
    prefix = f"{where}: " if where else ""
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
