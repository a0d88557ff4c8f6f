"""Running a study: every run recorded; a rerun skips finished runs and retries failed ones."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.errors import UserError
from transferlab.probing.result import ProbeResult
from transferlab.study import RunStore, load_study, plan_study, run_study
from transferlab.study.runner import STUDY_STAGE, execute
from transferlab.study.store import RESULT_SCHEMA

STUDY = f"""
    name: tiny
    data: data
    backbones: [{TINY_BACKBONE}]
    settings: {{num_workers: 0, batch_size: 8}}
    methods:
      - {{name: logreg, kind: probe, head: logreg}}
      - {{name: temperature, kind: temperature, sweep: {{temperature: [0.5, 4]}}}}
    sweep:
      per_class: [3, 5]
    """


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    make_image_folder(tmp_path / "data", per_class=10)
    return write_study(tmp_path, STUDY)


def counting(calls: list, fail_on: set[str] | None = None):
    def runner(run, models_dir, progress):
        calls.append(run.run_id)
        if fail_on and run.run_id in fail_on:
            raise RuntimeError("boom")
        return execute(run, models_dir, progress)
    return runner


def test_study_records_every_run_and_a_rerun_runs_nothing(study, tmp_path):
    plan = plan_study(load_study(study))
    store = RunStore(tmp_path / "runs.sqlite")
    calls, stages = [], []
    outcome = run_study(plan, store, progress=lambda s, d, t: stages.append((s, d, t)), runner=counting(calls))
    assert outcome.count("done") == len(plan.runs) == 6
    assert (STUDY_STAGE, 6, 6) in stages
    rows = {r.id: r for r in store.runs()}
    assert all(isinstance(r.result, ProbeResult) and r.result_schema == RESULT_SCHEMA for r in rows.values())
    temperature = [r for r in rows.values() if r.kind == "temperature"]
    assert {r.result.temperature for r in temperature} == {0.5, 4.0}
    assert all(r.result.history and r.result.val_accuracy_max is not None for r in temperature)
    assert all(r.environment["torch_threads"] >= 1 and r.environment["torch"] for r in rows.values())
    assert all(0.0 <= r.accuracy <= 1.0 and r.config["per_class"] in (3, 5) for r in rows.values())

    again = run_study(plan, store, runner=counting(calls))
    assert again.count("skipped") == 6 and len(calls) == 6


def test_failing_run_is_recorded_and_retried_without_stopping_the_others(study, tmp_path):
    plan = plan_study(load_study(study))
    store = RunStore(tmp_path / "runs.sqlite")
    bad = plan.runs[1].run_id
    calls: list[str] = []
    outcome = run_study(plan, store, runner=counting(calls, fail_on={bad}))
    assert outcome.count("failed") == 1 and outcome.count("done") == 5
    row = store.get(bad)
    assert row.status == "failed" and row.error == "RuntimeError: boom" and "Traceback" in row.traceback

    calls.clear()
    retry = run_study(plan, store, runner=counting(calls))
    assert calls == [bad] and retry.count("done") == 1
    assert store.get(bad).status == "done" and store.get(bad).attempts == 2


def test_runner_that_returns_no_typed_result_fails_the_run(study, tmp_path):
    plan = plan_study(load_study(study))
    store = RunStore(tmp_path / "runs.sqlite")
    outcome = run_study(plan, store, runner=lambda run, models_dir, progress: {"accuracy": 1.0})
    assert outcome.count("failed") == 6
    assert store.get(plan.runs[0].run_id).error == "TypeError: the runner returned a dict, not a RunResult or RankResult"


def test_user_error_in_a_run_is_recorded_as_its_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_image_folder(tmp_path / "data", per_class=4)
    path = write_study(tmp_path, f"""
        data: data
        backbones: [{TINY_BACKBONE}]
        methods: [{{kind: probe, num_classes: 9, num_workers: 0}}]
        """)
    store = RunStore(tmp_path / "runs.sqlite")
    outcome = run_study(plan_study(load_study(path)), store)
    assert outcome.count("failed") == 1
    assert store.runs()[0].error == "--num-classes must be between 2 and 3, got 9"


def test_cli_runs_lists_and_reports(study, tmp_path, monkeypatch):
    from transferlab.cli.main import main

    monkeypatch.chdir(tmp_path)
    store = str(tmp_path / "cli.sqlite")
    runner = CliRunner()
    result = runner.invoke(main, ["study", "run", str(study), "--store", store], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "6 run, 0 already done, 0 failed" in result.output
    listed = runner.invoke(main, ["runs", "--store", store, "--method", "logreg", "--json"], catch_exceptions=False)
    import json

    rows = json.loads(listed.output)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"done"}
    again = runner.invoke(main, ["study", "run", str(study), "--store", store], catch_exceptions=False)
    assert "0 run, 6 already done" in again.output
    report = runner.invoke(main, ["study", "report", str(study), "--store", store, "--out", "rep", "--no-images"],
                           catch_exceptions=False)
    assert report.exit_code == 0, report.output
    assert (tmp_path / "rep" / "report.html").is_file() and (tmp_path / "rep" / "comparison.csv").is_file()


def test_cli_bad_study_file_is_one_error_line_with_the_line_number(tmp_path):
    path = write_study(tmp_path, "methods:\n  - kind: probe\n    head: logreg\n    C: lots\n")
    done = subprocess.run([sys.executable, "-m", "transferlab", "study", "run", str(path), "--store",
                           str(tmp_path / "s.sqlite")], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {path}:4: C must be a number (or null), got 'lots'"


def test_load_study_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no study file"):
        load_study(tmp_path / "absent.yaml")
