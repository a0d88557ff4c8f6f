"""``probe``/``finetune --config FILE`` and ``--print-config``: a run's settings in a YAML file, flags over it.

The same settings given as flags or as a file are the same run (the same settings id, the suffix of the
default output folder); a printed config read back is the same run again; a flag the user gives wins over
the file, a flag left at its default does not; a bad file is one ``error: FILE:LINE:`` line and exit 2.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

FILE = """
    data: digits
    backbone: small-cnn
    lr: 3e-4
    augment: flip,rotate
    epochs: 2
    per_class: 5
    split: 0.6,0.2,0.2
    """
FLAGS = ("-d", "digits", "-b", "small-cnn", "--lr", "3e-4", "--augment", "flip,rotate", "--epochs", "2",
         "--per-class", "5", "--split", "0.6,0.2,0.2")


def write(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def printed(cli, *args: str) -> tuple[str, dict]:
    """The ``--print-config`` text of ``ARGS`` and its settings id."""
    result = cli(*args, "--print-config")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.startswith("# ") and "settings id" in header, header
    return result.stdout, header.rsplit(" ", 1)[1]


def file_of(tmp_path, text: str = FILE):
    return write(tmp_path, text.replace("split:", "ratios:"))


def test_flags_and_the_same_settings_in_a_file_print_the_same_config_and_id(cli, tmp_path):
    config = file_of(tmp_path)

    by_flags, flags_id = printed(cli, "finetune", *FLAGS)
    by_file, file_id = printed(cli, "finetune", "--config", str(config))

    assert file_id == flags_id
    assert by_file == by_flags
    values = yaml.safe_load(by_file)
    assert values["lr"] == 3e-4 and values["augment"] == ["flip", "rotate"] and values["epochs"] == 2
    assert values["ratios"] == [0.6, 0.2, 0.2] and values["backbone"] == "small-cnn"


def test_a_printed_config_read_back_is_the_same_run(cli, tmp_path):
    text, first_id = printed(cli, "finetune", *FLAGS, "--freeze", "top:2", "--schedule", "cosine")
    again = write(tmp_path, text, "printed.yaml")

    text_again, second_id = printed(cli, "finetune", "--config", str(again))

    assert second_id == first_id and text_again == text


def test_every_field_of_the_record_is_printed(cli):
    import dataclasses

    from transferlab.finetune.config import FinetuneConfig
    from transferlab.probing.config import ProbeConfig

    for command, record in (("finetune", FinetuneConfig), ("probe", ProbeConfig)):
        text, _ = printed(cli, command, "-d", "digits")
        assert list(yaml.safe_load(text)) != []
        assert set(yaml.safe_load(text)) == {f.name for f in dataclasses.fields(record)}, command


def test_a_flag_given_overrides_the_file_and_a_flag_left_alone_does_not(cli, tmp_path):
    config = file_of(tmp_path)

    text, overridden_id = printed(cli, "finetune", "--config", str(config), "--epochs", "3", "--lr", "1e-3")
    values = yaml.safe_load(text)

    assert values["epochs"] == 3  # given: wins over the file's 2
    assert values["lr"] == 1e-3  # given at the option's default value: still wins over the file's 3e-4
    assert values["augment"] == ["flip", "rotate"] and values["per_class"] == 5  # not given: the file's
    _, same_by_flags = printed(cli, "finetune", *FLAGS, "--epochs", "3", "--lr", "1e-3")
    assert overridden_id == same_by_flags


def test_probe_takes_a_config_file_with_flags_over_it(cli, tmp_path):
    config = write(tmp_path, """
        data: digits
        head: knn
        layer: 3
        classes: "0,1,2"
        """)

    by_file, file_id = printed(cli, "probe", "--config", str(config), "--seed", "4")
    _, flags_id = printed(cli, "probe", "-d", "digits", "--head", "knn", "--layer", "3", "--classes", "0,1,2",
                          "--seed", "4")

    values = yaml.safe_load(by_file)
    assert values["head"] == "knn" and values["layer"] == "3" and values["classes"] == ["0", "1", "2"]
    assert values["seed"] == 4
    assert file_id == flags_id


def test_a_real_run_from_a_config_file_trains_with_its_values_under_the_printed_id(cli, tmp_path, monkeypatch):
    config = write(tmp_path, """
        data: digits
        backbone: small-cnn
        per_class: 5
        split: [0.6, 0.2, 0.2]
        epochs: 1
        lr: 0.002
        num_workers: 0
        device: cpu
        precision: fp32
        """.replace("split:", "ratios:"))
    _, flags_id = printed(cli, "finetune", "-d", "digits", "-b", "small-cnn", "--per-class", "5", "--split",
                          "0.6,0.2,0.2", "--epochs", "1", "--lr", "0.002", "--precision", "fp32")
    monkeypatch.chdir(tmp_path)

    result = cli("finetune", "--config", str(config), "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["config"]["lr"] == 0.002 and record["config"]["per_class"] == 5
    assert record["epochs_run"] == 1
    folders = [p.name for p in (tmp_path / "runs").iterdir()]
    assert folders == [f"small-cnn-none-{flags_id}"]  # the default output folder: the same settings id


@pytest.mark.parametrize("text, line, fragment", [
    ("data: digits\nlr: 1e-3\nlearning_rate: 0.1\n", 3, "unknown key 'learning_rate'"),
    ("data: digits\nepochs: 0\n", 2, "epochs must be at least 1"),
    ("data: digits\nepochs: many\n", 2, "epochs must be an integer"),
    ("data: digits\naugment: flip,spin\n", 2, "unknown augmentation 'spin'"),
    ("data: digits\nfreeze: sometimes\n", 2, "freeze"),
    ("data: digits\nkind: probe\n", 2, "kind 'probe'"),
    ("data: digits\nsplit: 0.6,0.2,0.2\n", 2, "the option --split is written ratios: VALUE"),
    ("data: digits\nper-class: 5\n", 2, "the option --per-class is written per_class: VALUE"),
    ("data: digits\nlr: [1\n", 3, "expected"),
])
def test_a_bad_config_file_is_one_located_error_line(cli, tmp_path, text, line, fragment):
    config = tmp_path / "bad.yaml"
    config.write_text(text)

    result = cli("finetune", "--config", str(config), "--print-config")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {config}:{line}: "), result.stderr
    assert fragment in lines[0]


def test_a_missing_config_file_or_missing_data_is_one_error_line(cli, tmp_path):
    missing = cli("probe", "--config", str(tmp_path / "nope.yaml"))
    no_data = cli("finetune", "--epochs", "1")

    for result in (missing, no_data):
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert str(tmp_path / "nope.yaml") in missing.stderr
    assert "--data" in no_data.stderr
