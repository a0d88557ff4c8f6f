"""The report checked from outside: a real study through ``study run`` and ``study report``, its figures recomputed.

The study sweeps the number of classes (3 and 5) for two probe heads, and adds a probe and a
fine-tune on all 5 classes that sweep nothing. A 3-class run and a 5-class run share the test
images of three classes, so a careless paired test finds "shared images" between them; only
runs on the same images with the same classes may be compared. Every number of the comparison
CSV (and each run's accuracy, interval and macro F1 in runs.csv) is recomputed here from the
per-image predictions in the store with this file's own code (scipy, scikit-learn).
"""

from __future__ import annotations

import csv
import html
import math
import re
from collections import defaultdict

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from helpers import make_class_folders
from study_fixtures import TINY_BACKBONE, write_study
from transferlab.study.store import RunStore

CLASS_NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study run and reported through the command line (in a subprocess each, as a user runs them)."""
    from helpers import run_cli

    tmp = tmp_path_factory.mktemp("checked")
    make_class_folders(tmp / "data", {name: 14 for name in CLASS_NAMES})
    path = write_study(tmp, f"""
        name: classes
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8, image_size: 64, test_per_class: 4}}
        methods:
          - {{name: logreg, kind: probe, head: logreg, sweep: {{num_classes: [3, 5]}}}}
          - {{name: knn, kind: probe, head: knn, sweep: {{num_classes: [3, 5]}}}}
          - {{name: svm-all, kind: probe, head: svm}}
          - {{name: fine-tuned, kind: finetune, freeze: none, epochs: 1, early_stopping: none}}
        sweep:
          seed: [0, 1]
        """)
    env = {"TRANSFERLAB_CACHE_DIR": str(tmp / "cache")}
    store = tmp / "runs.sqlite"
    ran = run_cli("study", "run", str(path), "--store", str(store), env=env)
    assert ran.returncode == 0, ran.stderr
    reported = run_cli("study", "report", str(path), "--store", str(store), "--out", str(tmp / "report"),
                       "--no-images", env=env)
    assert reported.returncode == 0, reported.stderr
    return tmp / "report", RunStore(store)


def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _vs_best_cells(report) -> dict[str, str]:
    """{run ids of a comparison row: its 'vs best' cell} from the HTML table."""
    table = re.search(r'<table id="comparison">(.*?)</table>', (report / "report.html").read_text(), re.S).group(1)
    return {html.unescape(ids): html.unescape(cell) for ids, cell in
            re.findall(r'<tr data-runs="([^"]*)"[^>]*>.*?<td class="col-vs_best">(.*?)</td>', table, re.S)}


def _results(store, row: dict) -> list:
    return [store.get(run_id).result for run_id in row["run_ids"].split()]


def _test_set(results) -> tuple:
    """What a row was tested on, from its stored predictions: its classes and each seed's test images."""
    return (tuple(results[0].classes),
            frozenset((r.config["seed"], frozenset(p["path"] for p in r.predictions)) for r in results))


def _correct(results) -> dict[tuple, bool]:
    return {(r.config["seed"], p["path"]): p["true"] == p["predicted"] for r in results for p in r.predictions}


def _mcnemar_p(row: dict[tuple, bool], best: dict[tuple, bool]) -> float:
    """Exact McNemar from scratch: a two-sided binomial test on the discordant pairs."""
    assert row.keys() == best.keys()
    only_row = sum(row[k] and not best[k] for k in row)
    only_best = sum(best[k] and not row[k] for k in row)
    if only_row + only_best == 0:
        return 1.0
    return min(1.0, stats.binomtest(only_row, only_row + only_best, 0.5).pvalue)


def _wilson(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _interval(results) -> tuple[float, float, str]:
    accuracies = [np.mean([p["true"] == p["predicted"] for p in r.predictions]) for r in results]
    if len(results) == 1:
        correct = sum(p["true"] == p["predicted"] for p in results[0].predictions)
        return (*_wilson(correct, len(results[0].predictions)), "Wilson")
    std = float(np.std(accuracies, ddof=1))
    if std == 0:
        pooled = [p for r in results for p in r.predictions]
        return (*_wilson(sum(p["true"] == p["predicted"] for p in pooled), len(pooled)), "Wilson pooled")
    half = stats.t.ppf(0.975, len(accuracies) - 1) * std / math.sqrt(len(accuracies))
    mean = float(np.mean(accuracies))
    return max(0.0, mean - half), min(1.0, mean + half), "t"


def _groups(store, rows: list[dict]) -> dict[tuple, list[int]]:
    groups = defaultdict(list)
    for index, row in enumerate(rows):
        groups[_test_set(_results(store, row))].append(index)
    return groups


def test_vs_best_compares_only_runs_of_the_same_class_count(study):
    report, store = study
    rows = _csv(report / "comparison.csv")
    cells = _vs_best_cells(report)
    groups = _groups(store, rows)
    assert sorted(len(classes) for classes, _ in groups) == [3, 5]  # two test sets: 3 and 5 classes
    for members in groups.values():
        best = [i for i in members if cells[rows[i]["run_ids"]] == "best"]
        assert len(best) == 1, [(rows[i]["method"], rows[i]["setting"], cells[rows[i]["run_ids"]]) for i in members]
        best_correct = _correct(_results(store, rows[best[0]]))
        for i in members:
            if i != best[0]:
                expected = _mcnemar_p(_correct(_results(store, rows[i])), best_correct)
                assert float(rows[i]["p_vs_best"]) == pytest.approx(expected, abs=1e-12)
    sentences = [line for line in (report / "report.md").read_text().splitlines() if "McNemar" in line]
    three = [s for s in sentences if "3 classes" in s]
    five = [s for s in sentences if "5 classes" in s]
    assert len(three) == 1 and "num\\_classes=5" not in three[0] and "svm-all" not in three[0], sentences
    assert five and all("num\\_classes=3" not in s for s in five), sentences
    assert "same test images with the same classes" in (report / "report.html").read_text()


def test_the_fine_tune_is_set_against_the_best_probe_on_its_own_test_set(study):
    report, store = study
    rows = _csv(report / "comparison.csv")
    finetune = next(i for i, r in enumerate(rows) if r["method"] == "fine-tuned")
    members = next(m for m in _groups(store, rows).values() if finetune in m)
    probes = [i for i in members if rows[i]["method"] != "fine-tuned"]
    assert {rows[i]["method"] for i in probes} == {"logreg", "knn", "svm-all"}  # the 5-class probes only
    probe = max(probes, key=lambda i: float(rows[i]["accuracy_mean"]))
    p = _mcnemar_p(_correct(_results(store, rows[finetune])), _correct(_results(store, rows[probe])))
    html_text = html.unescape((report / "report.html").read_text())
    sentence = re.search(r'<p class="versus-probe">([^<]*)</p>', html_text).group(1)
    assert f"the fine-tune fine-tuned / test_efficientnet ({float(rows[finetune]['accuracy_mean']):.3f})" in sentence
    assert f"the probe {rows[probe]['method']} / test_efficientnet" in sentence
    verdict = ("beats" if float(rows[finetune]["accuracy_mean"]) > float(rows[probe]["accuracy_mean"])
               else "is worse than") if p < 0.05 else "is not better than"
    assert verdict in sentence and (f"p = {p:.3f}" if p >= 0.001 else "p < 0.001") in sentence, sentence


def test_every_figure_of_the_comparison_csv_recomputed_from_the_stored_predictions(study):
    report, store = study
    rows = _csv(report / "comparison.csv")
    cells = _vs_best_cells(report)
    groups = _groups(store, rows)
    group_of = {i: members for members in groups.values() for i in members}
    for index, row in enumerate(rows):
        results = _results(store, row)
        accuracies = [np.mean([p["true"] == p["predicted"] for p in r.predictions]) for r in results]
        assert int(row["runs"]) == len(results) == 2
        assert float(row["accuracy_mean"]) == pytest.approx(np.mean(accuracies), abs=1e-12)
        assert float(row["accuracy_std"]) == pytest.approx(np.std(accuracies, ddof=1), abs=1e-12)
        low, high, how = _interval(results)
        assert (float(row["accuracy_low"]), float(row["accuracy_high"])) == pytest.approx((low, high), abs=1e-9)
        assert row["interval_method"] == how
        members = group_of[index]
        best = next(i for i in members if cells[rows[i]["run_ids"]] == "best")
        assert float(rows[best]["accuracy_mean"]) == max(float(rows[i]["accuracy_mean"]) for i in members)
        if index == best:
            assert row["p_vs_best"] == row["within_noise"] == ""
            continue
        p = _mcnemar_p(_correct(results), _correct(_results(store, rows[best])))
        assert float(row["p_vs_best"]) == pytest.approx(p, abs=1e-12)
        assert row["within_noise"] == str(p >= 0.05)
        assert cells[row["run_ids"]] == (f"p = {p:.3f}" if p >= 0.001 else "p < 0.001") + \
            (", within noise" if p >= 0.05 else ", different")


def test_every_runs_accuracy_interval_and_macro_f1_recomputed(study):
    report, store = study
    runs = _csv(report / "runs.csv")
    assert len(runs) == 12
    for run in runs:
        result = store.get(run["id"]).result
        truth = [p["true"] for p in result.predictions]
        predicted = [p["predicted"] for p in result.predictions]
        correct = sum(t == q for t, q in zip(truth, predicted))
        assert run["accuracy"] == f"{correct / len(truth):.4f}"
        assert run["interval"] == "[{:.3f}, {:.3f}]".format(*_wilson(correct, len(truth)))
        assert run["macro_f1"] == f"{f1_score(truth, predicted, average='macro'):.4f}"
