"""A study's ``rank`` method: each backbone's candidates scored before training, stored with the study's runs, and
the report's "Ranking before training" section: the scores beside the other methods' measured test accuracies,
and Kendall's tau of each score against each of them over the backbones."""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image
from scipy.stats import kendalltau

from study_fixtures import write_study
from transferlab.report.tables import markdown_text

BACKBONES = ("test_efficientnet", "test_resnet", "test_convnext", "test_byobnet")


def hard_folders(root, classes: int = 4, per_class: int = 20):
    """Classes a shade of grey apart under heavy noise: hard enough that random-init backbones differ in accuracy."""
    rng = np.random.default_rng(5)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = np.clip(100 + 12 * c + rng.normal(0, 45, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


STUDY = """
    name: ranked
    data: data
    backbones: [{backbones}]
    settings: {{num_workers: 0, batch_size: 16, precision: fp32}}
    methods:
      - {{name: scores, kind: rank, layers: ["1", "2"], scores: [logme, knn_accuracy]}}
      - {{name: logreg, kind: probe, head: logreg}}
      - {{name: knn, kind: probe, head: knn, backbones: [test_efficientnet, test_resnet]}}
    """


@pytest.fixture(scope="module")
def ranked_study(tmp_path_factory):
    """The study run and reported once through the CLI: (store path, report folder, the two commands' results)."""
    import subprocess
    import sys

    from transferlab.cli.main import run

    folder = tmp_path_factory.mktemp("ranked")
    hard_folders(folder / "data")
    backbones = ", ".join(f"{{name: {b}, random_init: true}}" for b in BACKBONES)
    study = write_study(folder, STUDY.format(backbones=backbones))
    store, out = folder / "runs.sqlite", folder / "report"
    results = []
    for args in (["study", "run", str(study), "--store", str(store)],
                 ["study", "report", str(study), "--store", str(store), "-o", str(out), "--no-images"]):
        patch = pytest.MonkeyPatch()
        patch.setattr(sys, "argv", ["transferlab", *args])
        patch.setenv("TRANSFERLAB_CACHE_DIR", str(folder / "cache"))
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            patch.undo()
        results.append(subprocess.CompletedProcess(args, code))
    return store, out, results


def stored(store):
    """{backbone: best LogME and kNN val. accuracy of its candidates} of the rank runs, and {method: {backbone:
    mean test accuracy}} of the others, read from the store."""
    from transferlab.study.store import RunStore

    scores, measured = {}, defaultdict(lambda: defaultdict(list))
    with RunStore(store, read_only=True, create=False) as runs:
        for row in runs.runs(status="done"):
            if row.kind == "rank":
                scores[row.backbone] = {s: max(getattr(c, s) for c in row.result.candidates)
                                        for s in ("logme", "knn_accuracy")}
                assert {c.layer for c in row.result.candidates} and len(row.result.candidates) == 2
            else:
                measured[row.method][row.backbone].append(row.accuracy)
    return scores, {m: {b: float(np.mean(v)) for b, v in by.items()} for m, by in measured.items()}


def tau_rows(out):
    with open(out / "ranking.csv", encoding="utf-8") as f:
        return {(r["score"], r["measured"]): r for r in csv.DictReader(f)}


def test_a_rank_method_scores_every_backbone_and_its_runs_are_stored(ranked_study):
    store, _, (ran, reported) = ranked_study
    assert ran.returncode == 0 and reported.returncode == 0
    scores, measured = stored(store)
    assert sorted(scores) == sorted(BACKBONES)
    assert sorted(measured["logreg"]) == sorted(BACKBONES) and sorted(measured["knn"]) == sorted(BACKBONES[:2])


def test_the_report_puts_the_scores_beside_the_measured_accuracies(ranked_study):
    store, out, _ = ranked_study
    scores, measured = stored(store)
    text = (out / "report.md").read_text()
    section = text.split("## Ranking before training")[1].split("## Comparison")[0]
    assert "| LogME |" in section and "| kNN val. acc. |" in section
    assert "LEEP" not in section and "logreg val. acc." not in section  # the method's scores: key chose two
    assert "| logreg test acc. |" in section and "| knn test acc. |" in section
    for backbone in BACKBONES:
        rows = [line for line in section.splitlines() if line.startswith(f"| {markdown_text(backbone)} |")]
        assert len(rows) == 2  # its two layers
        assert all(f"| {measured['logreg'][backbone]:.4f} |" in row for row in rows)
    html = (out / "report.html").read_text()
    assert 'id="ranking"' in html and 'id="ranking-tau-1"' in html
    assert "| scores |" not in text.split("## Comparison")[1]  # rank runs are no rows of the comparison


def test_the_reports_tau_is_scipys_on_the_stored_scores_and_accuracies(ranked_study):
    store, out, _ = ranked_study
    scores, measured = stored(store)
    rows = tau_rows(out)
    assert set(rows) == {(s, m) for s in ("logme", "knn_accuracy") for m in ("logreg", "knn")}
    for score in ("logme", "knn_accuracy"):
        row = rows[(score, "logreg")]
        expected = kendalltau([scores[b][score] for b in BACKBONES], [measured["logreg"][b] for b in BACKBONES])
        assert int(row["backbones"]) == len(BACKBONES)
        assert not np.isnan(expected.statistic), "the data must make the backbones' accuracies differ"
        assert float(row["tau"]) == pytest.approx(expected.statistic, abs=1e-12)
    section = (out / "report.md").read_text().split("## Ranking before training")[1]
    assert f"| logme | logreg | {len(BACKBONES)} | {float(rows[('logme', 'logreg')]['tau']):.3f} |" in section


def test_tau_over_fewer_than_three_backbones_is_undefined_and_says_so(ranked_study):
    _, out, _ = ranked_study
    row = tau_rows(out)[("logme", "knn")]
    assert row["backbones"] == "2" and row["tau"] == ""
    assert "undefined" in row["note"] and "3 or more" in row["note"]


@pytest.mark.parametrize("method, message", [
    ('{name: r, kind: rank, scores: [logme, logmee]}', "unknown score 'logmee' (did you mean 'logme'?)"),
    ('{name: r, kind: rank, scores: []}', "scores needs at least one"),
    ('{name: r, kind: rank, head: logreg}', "unknown key 'head' in a rank method"),
    ('{name: r, kind: probe, scores: [logme]}', "unknown key 'scores' in a probe method"),
    ('{name: r, kind: rank, sweep: {folds: [2, 3]}}', "no --folds"),
])
def test_a_bad_rank_method_is_one_error_line(tmp_path, cli, method, message):
    (tmp_path / "data" / "a").mkdir(parents=True)
    study = write_study(tmp_path, f"""
        data: data
        methods:
          - {method}
        """)
    result = cli("study", "run", str(study), "--store", str(tmp_path / "runs.sqlite"), "--dry-run")
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error:") and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_rank_method_plans_one_run_per_backbone_and_leaves_the_folds_to_the_others(tmp_path):
    from transferlab.rank.config import RankConfig
    from transferlab.study import load_study, plan_study

    hard_folders(tmp_path / "data", classes=2, per_class=3)
    study = write_study(tmp_path, """
        data: data
        backbones: [{name: test_resnet, random_init: true}, {name: test_efficientnet, random_init: true}]
        settings: {folds: 2, batch_size: 4}
        methods:
          - {name: r, kind: rank, poolings: [avg, max], backbones: [test_resnet]}
          - {name: p, kind: probe}
        """)
    plan = plan_study(load_study(study))
    ranked = [run for run in plan.runs if run.kind == "rank"]
    assert [(r.runner, r.backbone) for r in ranked] == [("rank", "test_resnet")]
    config = ranked[0].config
    assert isinstance(config, RankConfig) and config.backbones == ["test_resnet"] and config.random_init
    assert config.poolings == ["avg", "max"] and config.batch_size == 4 and config.folds is None
    assert sorted(r.config.fold for r in plan.runs if r.kind == "probe") == [0, 0, 1, 1]


def test_a_logged_study_leaves_its_rank_runs_unlogged(tmp_path, cli):
    """``study run --log``: the probe's runs log, the rank method's (a record without log fields) plan as they are."""
    hard_folders(tmp_path / "data", per_class=4)
    backbones = "{name: test_efficientnet, random_init: true}, {name: test_resnet, random_init: true}"
    study = write_study(tmp_path, STUDY.format(backbones=backbones))
    result = cli("study", "run", str(study), "--store", str(tmp_path / "runs.sqlite"), "--dry-run", "--log",
                 "tensorboard", "--log-dir", str(tmp_path / "logs"))
    assert result.returncode == 0, result.stderr
    assert "scores" in result.stdout + result.stderr and "logreg" in result.stdout + result.stderr
