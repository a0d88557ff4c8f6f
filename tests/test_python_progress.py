"""The Python calls draw progress bars on stderr (tqdm.auto: widgets in a notebook) unless ``progress=False``."""

from __future__ import annotations

import re

import pytest

import transferlab
from transferlab.finetune import finetune
from wiring import FINETUNE, PROBE, small_folder

BAR = re.compile(r"\d+/\d+ \[")  # tqdm's "done/total [elapsed<left, rate]"


@pytest.fixture
def data(tmp_path):
    return small_folder(tmp_path / "data")


def bars(text: str, stage: str) -> list[str]:
    """The progress lines of ``stage`` in captured stderr (tqdm redraws a line with a carriage return)."""
    return [line for line in re.split(r"[\r\n]", text) if line.startswith(stage) and BAR.search(line)]


def test_probe_shows_a_bar_per_stage_by_default(data, capsys):
    transferlab.probe(data, **PROBE, cache=False)
    err = capsys.readouterr().err
    assert bars(err, "features (train)") and bars(err, "features (test)"), err


def test_probe_is_silent_with_progress_false(data, capsys):
    transferlab.probe(data, progress=False, **PROBE, cache=False)
    err = capsys.readouterr().err
    assert not bars(err, "features"), err


def test_probe_calls_a_progress_function_given_instead(data, capsys):
    seen = []
    transferlab.probe(data, progress=lambda stage, done, total: seen.append((stage, done, total)), **PROBE,
                      cache=False)
    assert ("features (train)", 12, 12) in seen
    assert not bars(capsys.readouterr().err, "features")


def test_finetune_shows_its_epochs_by_default_and_nothing_with_progress_false(data, tmp_path, capsys):
    finetune(data, output=str(tmp_path / "m1"), freeze="none", **FINETUNE)
    err = capsys.readouterr().err
    assert bars(err, "train epoch 1/1"), err
    finetune(data, output=str(tmp_path / "m2"), freeze="none", progress=False, **FINETUNE)
    assert not bars(capsys.readouterr().err, "train epoch"), err


def test_a_study_from_python_shows_its_runs(data, tmp_path, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(f"""name: tiny
data: {data}
backbones: [test_efficientnet]
methods:
  - {{name: logreg, kind: probe, head: logreg, random_init: true, image_size: 32, batch_size: 4, num_workers: 0}}
sweep:
  seed: [0, 1]
""")
    outcome = transferlab.run_study_file(study, store=tmp_path / "runs.sqlite")
    assert outcome.count("done") == 2
    err = capsys.readouterr().err
    assert bars(err, "study runs"), err
    again = transferlab.run_study_file(study, store=tmp_path / "runs.sqlite", progress=False)
    assert again.count("skipped") == 2
    assert not bars(capsys.readouterr().err, "study runs")


def test_a_study_from_python_runs_into_the_store_its_file_names(data, tmp_path, monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_STORE", raising=False)
    study = tmp_path / "studies" / "named.yaml"
    study.parent.mkdir()
    study.write_text(f"""name: named
data: {data}
store: stores/named.sqlite
backbones: [test_efficientnet]
methods:
  - {{name: logreg, kind: probe, head: logreg, random_init: true, image_size: 32, batch_size: 4, num_workers: 0}}
""")
    assert transferlab.run_study_file(study, progress=False).count("done") == 1
    assert (tmp_path / "studies" / "stores" / "named.sqlite").is_file()  # beside the study file, as `study run` puts it
