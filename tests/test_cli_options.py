"""The options of ``probe`` and ``finetune`` are the config records' fields: same defaults, same ranges.

Each field of ``ProbeConfig``/``FinetuneConfig`` marked for the command line must
be an option of its command whose default parses to the field's default, so a
default lives in one place. Out-of-range values stop at parsing with one error
line (exit 2), before any data or torch is touched. None of these tests loads torch.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import click
import pytest

from transferlab.cli.main import main
from transferlab.finetune.config import FinetuneConfig
from transferlab.probing.config import ProbeConfig

CONFIGS = {"probe": ProbeConfig, "finetune": FinetuneConfig}
# options of the commands that are not config fields (data is a field, set through the required --data)
CONFIG_FILE_OPTIONS = {"config_file", "print_config"}  # --config and --print-config: tests/test_run_config.py
EXTRA_OPTIONS = {"probe": {"no_cache", "as_json", "predictions", "help", *CONFIG_FILE_OPTIONS},
                 "finetune": {"as_json", "help", *CONFIG_FILE_OPTIONS}}


def field_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def cli_fields(config_class):
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("cli", True)]


def parsed(command: str, *args: str) -> dict:
    """The values click gives the command for ``-d somewhere ARGS`` (the command itself does not run)."""
    cmd = main.commands[command]
    return cmd.make_context(command, ["-d", "somewhere", *args]).params



@pytest.mark.parametrize("command", CONFIGS)
def test_every_command_line_field_is_an_option_with_the_field_default(command):
    options = {p.name: p for p in main.commands[command].params}
    values = parsed(command)
    for field in cli_fields(CONFIGS[command]):
        assert field.name in options, f"{command} has no option for {field.name}"
        expected = field_default(field)
        assert values[field.name] == expected, (
            f"{command} --{field.name}: default {values[field.name]!r}, the config says {expected!r}")
        assert type(values[field.name]) is type(expected) or expected is None and values[field.name] is None


@pytest.mark.parametrize("command", CONFIGS)
def test_every_option_is_a_config_field_or_a_known_extra(command):
    names = {f.name for f in dataclasses.fields(CONFIGS[command])}
    unknown = {p.name for p in main.commands[command].params} - names - EXTRA_OPTIONS[command]
    assert not unknown, f"{command} options that the config never sees: {unknown}"


@pytest.mark.parametrize("command", CONFIGS)
def test_the_config_from_default_options_is_the_default_config(command):
    from transferlab.cli.common import config_from

    config_class = CONFIGS[command]
    extra = {"cache": True} if command == "probe" else {}

    assert config_from(config_class, parsed(command), **extra) == config_class(data="somewhere")


@pytest.mark.parametrize("command", CONFIGS)
def test_each_option_carries_its_field_help_and_range(command):
    options = {p.name: p for p in main.commands[command].params}
    for field in cli_fields(CONFIGS[command]):
        option = options[field.name]
        assert option.help == field.metadata["help"]
        meta = field.metadata
        if meta.get("choices"):
            assert list(option.type.choices) == list(meta["choices"])
        if meta.get("minimum") is not None or meta.get("above") is not None:
            assert isinstance(option.type, (click.IntRange, click.FloatRange)), field.name


LEGACY_FLAGS = {
    "probe": ["-b", "resnet50", "--head", "svm", "--layer", "3", "--pooling", "max", "--weights", "w.safetensors",
              "--random-init", "--per-class", "5", "--classes", "a,b", "--num-classes", "2", "--split",
              "0.8,0.1,0.1", "--temperature", "2", "--C", "0.5", "--dropout", "0.1", "--seed", "1",
              "--batch-size", "8", "--workers", "0", "--no-cache", "--json", "--predictions", "--device", "cpu",
              "--precision", "fp32"],
    "finetune": ["-b", "resnet50", "--freeze", "top:2", "--head", "mlp:64", "--dropout", "0.1", "--pooling",
                 "flatten", "--optimizer", "lamb", "--lr", "0.01", "--backbone-lr", "0.001", "--train-bn",
                 "--weight-decay", "0.01", "--schedule", "cosine", "--batch-size", "8", "--epochs", "3",
                 "--stage2-epochs", "2", "--stage2-lr", "0.0001", "--early-stopping", "none", "--patience", "2",
                 "--augment", "flip,crop", "--class-weights", "--seed", "1", "--per-class", "5", "--classes", "a,b",
                 "--num-classes", "2", "--weights", "w.pt", "--random-init", "--no-prefix-cache", "-o", "out",
                 "--resume", "--workers", "0", "--json", "--split", "0.6,0.2,0.2", "--device", "cpu",
                 "--precision", "bf16", "--layer-decay", "0.7", "--warmup-epochs", "1", "--mixup", "0.2",
                 "--cutmix", "1.0", "--label-smoothing", "0.1"],
}


def test_every_documented_flag_parses_to_its_field():
    probe = parsed("probe", *LEGACY_FLAGS["probe"])
    assert probe["C"] == 0.5 and probe["num_workers"] == 0 and probe["ratios"] == (0.8, 0.1, 0.1)
    assert probe["classes"] == ["a", "b"] and probe["no_cache"] is True and probe["backbone"] == "resnet50"

    tune = parsed("finetune", *LEGACY_FLAGS["finetune"])
    assert tune["augment"] == ["flip", "crop"] and tune["train_bn"] is True and tune["prefix_cache"] is False
    assert tune["optimizer"] == "lamb"  # any timm optimizer name, not a fixed choice
    assert tune["ratios"] == (0.6, 0.2, 0.2) and tune["output"] == "out" and tune["precision"] == "bf16"
    assert parsed("finetune", "--freeze-bn")["train_bn"] is False
    assert parsed("finetune")["train_bn"] is None

    config = FinetuneConfig(**{k: v for k, v in tune.items() if k not in EXTRA_OPTIONS["finetune"]})
    assert config.layer_decay == 0.7 and config.label_smoothing == 0.1


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command, args, flag", [
    ("probe", ["--batch-size", "0"], "--batch-size"),
    ("probe", ["--dropout", "1.5"], "--dropout"),
    ("probe", ["--C", "0"], "--C"),
    ("probe", ["--temperature", "-1"], "--temperature"),
    ("probe", ["--workers", "-1"], "--workers"),
    ("probe", ["--per-class", "0"], "--per-class"),
    ("probe", ["--num-classes", "1"], "--num-classes"),
    ("probe", ["--seed", "-3"], "--seed"),
    ("probe", ["--pooling", "mean"], "--pooling"),
    ("probe", ["--precision", "fp64"], "--precision"),
    ("probe", ["--split", "0.7,0.3"], "--split"),
    ("probe", ["--batch-size", "many"], "--batch-size"),
    ("finetune", ["--lr", "-1"], "--lr"),
    ("finetune", ["--lr", "0"], "--lr"),
    ("finetune", ["--epochs", "0"], "--epochs"),
    ("finetune", ["--dropout", "1.5"], "--dropout"),
    ("finetune", ["--patience", "0"], "--patience"),
    ("finetune", ["--layer-decay", "1.5"], "--layer-decay"),
    ("finetune", ["--label-smoothing", "0.9"], "--label-smoothing"),
    ("finetune", ["--warmup-epochs", "-1"], "--warmup-epochs"),
    ("finetune", ["--stage2-lr", "0"], "--stage2-lr"),
    ("finetune", ["--schedule", "linear"], "--schedule"),
    ("finetune", ["--split", "0.7,0.3,0"], "--split"),
    ("finetune", ["--batch-size", "0"], "--batch-size"),
])
def test_out_of_range_value_is_one_error_line(cli, command, args, flag):
    code, out, err = unpack(cli(command, "-d", "digits", *args))

    assert_one_error_line(code, err, flag)
    assert out == ""


@pytest.mark.parametrize("command, args, fragment", [
    ("finetune", ["--lr", "nan"], "not a finite number"),
    ("finetune", ["--freeze", "bottom:3"], "bottom:3"),
    ("finetune", ["--augment", "flip,blur"], "blur"),
    ("finetune", ["--head", "svm"], "svm"),
    ("probe", ["--head", "mlp:0"], "mlp"),
])
def test_a_value_the_config_refuses_is_one_error_line(cli, command, args, fragment):
    code, out, err = unpack(cli(command, "-d", "digits", *args))

    assert_one_error_line(code, err, fragment)


def unpack(done: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return done.returncode, done.stdout, done.stderr


BAD_VALUE_IN_A_NEW_PROCESS = """
import sys
from transferlab.cli.main import run
sys.argv = ["transferlab", "finetune", "-d", "digits", "--epochs", "0"]
try:
    run()
except SystemExit as exc:
    print("exit", exc.code, "torch loaded:", "torch" in sys.modules)
"""


def test_a_bad_value_is_refused_before_torch_loads():
    out = subprocess.run([sys.executable, "-c", BAD_VALUE_IN_A_NEW_PROCESS], capture_output=True, text=True)

    assert out.stdout.strip() == "exit 2 torch loaded: False", out.stderr
    assert out.stderr.strip().startswith("error: Invalid value for '--epochs'")


def test_help_shows_the_defaults_and_ranges(cli):
    code, out, err = unpack(cli("finetune", "--help"))

    assert code == 0, err
    for text in ("--split", "0.7,0.15,0.15", "--device", "--precision", "--layer-decay", "--train-bn / --freeze-bn",
                 "--prefix-cache / --no-prefix-cache", "-o, --output", "-b, --backbone", "--workers"):
        assert text in out, text
