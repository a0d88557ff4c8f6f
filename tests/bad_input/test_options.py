"""Out-of-range and malformed options of every command: one `error:` line, exit 2, nothing written.

The checks live where values enter (the config records, the head and freeze parsers),
so the command line, the Python API and study files refuse the same values.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from bad_input_checks import assert_one_error, snapshot
from helpers import make_class_folders
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.errors import UserError
from transferlab.finetune.config import FinetuneConfig
from transferlab.probing.config import ProbeConfig

TINY = ("-b", "test_efficientnet", "--random-init")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("options") / "data", {"a": 6, "b": 6})


@pytest.fixture(scope="module")
def model(tmp_path_factory, data):
    """A saved model (1 epoch, frozen tiny backbone) for the commands that use one."""
    from transferlab.finetune import run_finetune

    folder = tmp_path_factory.mktemp("options-model") / "m"
    run_finetune(FinetuneConfig(data=str(data), output=str(folder), backbone="test_efficientnet", random_init=True,
                                freeze="all", epochs=1, num_workers=0))
    return folder


PROBE_CASES = [
    (("--batch-size", "0"), "batch-size"), (("--batch-size", "-4"), "batch-size"),
    (("--workers", "-1"), "workers"), (("--seed", "-1"), "seed"), (("--seed", "1099511627776"), "4294967295"),
    (("--C", "0"), "C"), (("--C", "-1"), "C"), (("--C", "nan"), "C"), (("--C", "inf"), "C"),
    (("--dropout", "1.5"), "dropout"), (("--dropout", "-0.1"), "dropout"), (("--dropout", "nan"), "dropout"),
    (("--head", "mlp:-3"), "mlp"), (("--head", "mlp:0"), "mlp"), (("--head", "mlp:"), "mlp"),
    (("--head", "mlp:a,b"), "mlp"), (("--head", "mlp:99999999999"), "too large"), (("--head", "foo"), "unknown head"),
    (("--head", "logreg:3"), "takes no sizes"),
    (("--split", "nan"), "split"), (("--split", "0.5,0.5"), "split"), (("--split", "-1,1,1"), "split"),
    (("--split", "inf,1,1"), "split"), (("--split", "0,1,1"), "split"), (("--split", "1,1,0"), "split"),
    (("--temperature", "nan"), "temperature"), (("--temperature", "0"), "temperature"),
    (("--temperature", "-1"), "temperature"), (("--temperature", "inf"), "temperature"),
    (("--per-class", "0"), "per-class"), (("--num-classes", "1"), "num-classes"),
    (("--pooling", "foo"), "pooling"), (("--precision", "fp64"), "precision"),
    (("--weights", "/nonexistent.safetensors"), "exclude each other"),
]


@pytest.mark.parametrize("args, fragment", PROBE_CASES, ids=[" ".join(a) for a, _ in PROBE_CASES])
def test_probe_refuses_the_option(cli, data, isolated_cache, args, fragment):
    before = snapshot(isolated_cache)
    assert_one_error(cli("probe", "-d", str(data), *TINY, *args), fragment)
    assert snapshot(isolated_cache) == before  # refused before anything was computed or cached


FINETUNE_CASES = [
    (("--epochs", "0"), "epochs"), (("--epochs", "-1"), "epochs"),
    (("--lr", "-1"), "lr"), (("--lr", "0"), "lr"), (("--lr", "nan"), "lr"), (("--lr", "inf"), "lr"),
    (("--stage2-epochs", "-3"), "stage2-epochs"), (("--stage2-epochs", "-1"), "stage2-epochs"),
    (("--stage2-lr", "0"), "stage2-lr"), (("--stage2-lr", "nan"), "stage2-lr"),
    (("--backbone-lr", "-1"), "backbone-lr"), (("--layer-decay", "2"), "layer-decay"),
    (("--layer-decay", "0"), "layer-decay"), (("--weight-decay", "-1"), "weight-decay"),
    (("--weight-decay", "nan"), "weight-decay"), (("--warmup-epochs", "-1"), "warmup-epochs"),
    (("--patience", "0"), "patience"), (("--mixup", "-1"), "mixup"), (("--mixup", "nan"), "mixup"),
    (("--cutmix", "-1"), "cutmix"), (("--label-smoothing", "0.9"), "label-smoothing"),
    (("--label-smoothing", "-0.1"), "label-smoothing"),
    (("--head", "mlp:0"), "mlp"), (("--head", "logreg"), "unknown head"), (("--head", "svm"), "unknown head"),
    (("--freeze", "foo"), "freeze"), (("--freeze", "first:-1"), "first:-1"), (("--freeze", "first:x"), "first:x"),
    (("--freeze", "top:-2"), "top:-2"), (("--freeze", "first:99999"), "freeze units; use a share"),
    (("--augment", "foo"), "foo"), (("--optimizer", "nosuchopt"), "nosuchopt"),
    (("--batch-size", "0"), "batch-size"), (("--workers", "-1"), "workers"), (("--seed", "-1"), "seed"),
    (("--dropout", "1"), "dropout"), (("--pooling", "token"), "pooling"), (("--schedule", "step"), "schedule"),
]


@pytest.mark.parametrize("args, fragment", FINETUNE_CASES, ids=[" ".join(a) for a, _ in FINETUNE_CASES])
def test_finetune_refuses_the_option_and_writes_no_model(cli, data, tmp_path, args, fragment):
    out = tmp_path / "model"
    result = cli("finetune", "-d", str(data), *TINY, "--epochs", "1", "-o", str(out), *args)
    assert_one_error(result, fragment)
    assert not out.exists()
    assert "epoch " not in result.stdout  # refused before training


@pytest.mark.parametrize("make_args, fragment", [
    (lambda m, img: ("predict", m, img, "--top-k", "0"), "top-k"),
    (lambda m, img: ("predict", m, img, "--top-k", "-3"), "top-k"),
    (lambda m, img: ("predict", m, img, "--batch-size", "0"), "batch-size"),
    (lambda m, img: ("predict", m, img, "--precision", "fp64"), "precision"),
    (lambda m, img: ("predict", m + "-missing", img), "no transferlab model"),
    (lambda m, img: ("predict", m, img + ".missing"), "missing"),
    (lambda m, img: ("evaluate", m, "-d", img + ".missing"), "missing"),
    (lambda m, img: ("evaluate", m, "-d", img, "--batch-size", "-1"), "batch-size"),
    (lambda m, img: ("export", m, "--format", "pickle"), "format"),
    (lambda m, img: ("export", m + "-missing", "--format", "onnx"), "no transferlab model"),
    (lambda m, img: ("export", m, "--format", "onnx", "-o", "/proc/transferlab-test.onnx"), "cannot write"),
    (lambda m, img: ("predict-imagenet", img, *TINY[:2], "--top-k", "-3"), "top-k"),
    (lambda m, img: ("predict-imagenet", img, *TINY[:2], "--top-k", "0"), "top-k"),
    (lambda m, img: ("layers", "no_such_model_anywhere"), "no_such_model_anywhere"),
    (lambda m, img: ("probe", "-d", img, "-b", "no_such_model_anywhere"), "no_such_model_anywhere"),
], ids=["predict top-k 0", "predict top-k -3", "predict batch 0", "predict precision", "predict no model",
        "predict no image", "evaluate no data", "evaluate batch -1", "export format", "export no model",
        "export unwritable", "imagenet top-k -3", "imagenet top-k 0", "layers unknown", "probe unknown backbone"])
def test_commands_on_a_saved_model_refuse_the_option(cli, model, data, make_args, fragment):
    before = snapshot(model)
    image = str(data / "a" / "a_000.png") if make_args(str(model), "x")[0] != "evaluate" else str(data)
    if make_args(str(model), "x")[0] == "probe":
        image = str(data)
    assert_one_error(cli(*make_args(str(model), image)), fragment)
    assert snapshot(model) == before


# ---------------------------------------------------------------------------------------------------------------
# The Python API refuses the same values when a config record is made


@pytest.mark.parametrize("config_class, values", [
    (ProbeConfig, {"batch_size": 0}), (ProbeConfig, {"num_workers": -1}), (ProbeConfig, {"seed": -1}),
    (ProbeConfig, {"seed": 2**40}), (FinetuneConfig, {"seed": 2**32}),
    (ProbeConfig, {"C": 0.0}), (ProbeConfig, {"C": math.nan}), (ProbeConfig, {"dropout": 1.5}),
    (ProbeConfig, {"temperature": math.inf}), (ProbeConfig, {"head": "mlp:-3"}), (ProbeConfig, {"ratios": (1, 1)}),
    (ProbeConfig, {"ratios": (math.nan, 1, 1)}), (ProbeConfig, {"pooling": "mean"}),
    (FinetuneConfig, {"lr": math.nan}), (FinetuneConfig, {"lr": -1e-3}), (FinetuneConfig, {"epochs": 0}),
    (FinetuneConfig, {"stage2_epochs": -3}), (FinetuneConfig, {"head": "mlp:0"}), (FinetuneConfig, {"freeze": "half:2"}),
    (FinetuneConfig, {"augment": ["flip", "warp"]}), (FinetuneConfig, {"mixup": math.inf}),
    (FinetuneConfig, {"early_stopping": "loss"}),
], ids=lambda v: v.__name__ if isinstance(v, type) else ",".join(f"{k}={w}" for k, w in v.items()))
def test_config_records_refuse_the_value(config_class, values):
    with pytest.raises(UserError):
        config_class(data="digits", **values)


@pytest.mark.parametrize("config_class, values, message", [
    (FinetuneConfig, {"epochs": "10"}, "epochs must be an integer (or None), got text '10'"),
    (FinetuneConfig, {"epochs": True}, "epochs must be an integer (or None), got true/false True"),
    (FinetuneConfig, {"epochs": 3.0}, "epochs must be an integer (or None), got number 3.0"),
    (FinetuneConfig, {"lr": "0.01"}, "lr must be a number, got text '0.01'"),
    (FinetuneConfig, {"stage2_lr": [0.1]}, "stage2_lr must be a number (or None), got list [0.1]"),
    (FinetuneConfig, {"random_init": "yes"}, "random_init must be true or false, got text 'yes'"),
    (FinetuneConfig, {"train_bn": 1}, "train_bn must be true or false (or None), got integer 1"),
    (ProbeConfig, {"classes": "a,b"}, "classes must be a list of text (or None), got text 'a,b'"),
    (ProbeConfig, {"classes": [1, 2]}, "classes must be a list of text (or None)"),
    (ProbeConfig, {"ratios": (0.7, "0.15", 0.15)}, "ratios must be a list of 3 numbers"),
    (ProbeConfig, {"backbone": None}, "backbone must be text, got None"),
    (ProbeConfig, {"batch_size": 32.5}, "batch_size must be an integer"),
    (ProbeConfig, {"C": "1"}, "C must be a number (or None)"),
], ids=lambda v: v.__name__ if isinstance(v, type) else (",".join(f"{k}={w!r}" for k, w in v.items())
                                                          if isinstance(v, dict) else None))
def test_config_records_refuse_a_value_of_another_type_naming_the_field(config_class, values, message):
    with pytest.raises(UserError, match=re.escape(message)):
        config_class(data="digits", **values)


def test_config_records_take_what_the_declared_types_mean():
    import numpy as np

    config = FinetuneConfig(data=Path("/tmp/somewhere"), lr=1, epochs=np.int64(3), ratios=[0.6, 0.2, 0.2],
                            augment="flip,rotate", random_init=np.bool_(True), output=Path("/tmp/out"))
    assert (config.data, config.output, config.augment) == ("/tmp/somewhere", "/tmp/out", ["flip", "rotate"])
    assert ProbeConfig(data="digits", layer=3, C=1).layer == "3"


def test_the_finetune_function_refuses_a_string_for_epochs_before_anything_runs(tmp_path):
    from transferlab.finetune import finetune

    with pytest.raises(UserError, match=re.escape("epochs must be an integer (or None), got text '10'")):
        finetune(data=str(tmp_path / "never-read"), epochs="10", output=str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


def test_a_study_value_of_another_type_is_one_line_and_1e_3_is_a_number(cli, tmp_path):
    from transferlab.study.spec import parse_study

    base = ("name: s\ndata: digits\nbackbones: [{name: test_efficientnet, random_init: true}]\n"
            "methods:\n  - {name: f, kind: finetune, epochs: EPOCHS, lr: 1e-3}\n")
    study = tmp_path / "study.yaml"
    study.write_text(base.replace("EPOCHS", "'2'"))
    assert_one_error(cli("study", "run", str(study), "--dry-run", "--store", str(tmp_path / "runs.db")),
                     f"{study}:5: epochs must be an integer", "'2'")
    assert parse_study(base.replace("EPOCHS", "2")).methods[0].options["lr"] == 0.001


def test_an_integer_python_cannot_print_is_refused_in_one_sentence():
    with pytest.raises(UserError, match="seed must be at most 4294967295, got a number of about 5,001 digits"):
        ProbeConfig(data="digits", seed=10**5000)


def test_the_probe_function_refuses_a_bad_value_before_loading_anything(tmp_path):
    import transferlab

    with pytest.raises(UserError, match="batch_size"):
        transferlab.probe(data=str(tmp_path / "never-read"), batch_size=0)


def test_the_finetune_function_refuses_a_nan_learning_rate(tmp_path):
    from transferlab.finetune import finetune

    with pytest.raises(UserError, match="lr"):
        finetune(data=str(tmp_path / "never-read"), lr=math.nan, output=str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------------------------
# Parsers never raise anything but a UserError, whatever they are given

SETTINGS = settings(max_examples=150, deadline=None)
TEXT = st.text(alphabet=st.sampled_from(list("mlpogresvkn:,0123456789-+. aefirsthwoxz")), max_size=16)


@SETTINGS
@given(TEXT)
def test_head_specs_parse_or_are_one_user_error(spec):
    from transferlab.heads.spec import MAX_HIDDEN, PROBE_HEADS, parse_head

    try:
        head = parse_head(spec)
    except UserError:
        return
    assert head.kind in PROBE_HEADS
    assert all(1 <= size <= MAX_HIDDEN for size in head.hidden)


@SETTINGS
@given(st.one_of(TEXT, st.builds(lambda a, b: f"{a}:{b}", st.sampled_from(["first", "top", "two-stage", "two-stage:top",
                                                                          "all", "half"]), st.integers(-5, 50))))
def test_freeze_policies_parse_or_are_one_user_error(policy):
    from transferlab.finetune.freeze import check_policy

    try:
        check_policy(policy)
    except UserError:
        pass


@SETTINGS
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4))
def test_split_ratios_are_finite_non_negative_or_one_user_error(ratios):
    from transferlab.options import check_ratios

    try:
        parts = check_ratios(tuple(ratios))
    except UserError:
        return
    assert len(parts) == 3 and all(math.isfinite(p) and p >= 0 for p in parts) and parts[0] > 0 and parts[2] > 0


@SETTINGS
@given(st.text(max_size=30))
def test_the_split_option_parses_or_is_a_usage_error(text):
    import click

    from transferlab.cli.common import Ratios

    try:
        parts = Ratios().convert(text, None, None)
    except click.BadParameter:
        return
    assert len(parts) == 3 and all(math.isfinite(p) for p in parts)


@SETTINGS
@given(st.text(max_size=30))
def test_comma_lists_parse_to_stripped_non_empty_words(text):
    from transferlab.cli.common import parse_list

    words = parse_list(text) or []
    assert all(word and word == word.strip() and "," not in word for word in words)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["batch_size", "num_workers", "seed", "C", "dropout", "temperature",
                                        "per_class", "num_classes"]),
                       st.one_of(st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True)), max_size=4))
def test_probe_configs_are_made_in_range_or_refused(values):
    try:
        config = ProbeConfig(data="digits", **values)
    except UserError:
        return
    assert config.batch_size >= 1 and config.seed >= 0 and 0 <= config.dropout <= 0.95
    assert config.C is None or (math.isfinite(config.C) and config.C > 0)
    assert config.temperature is None or (math.isfinite(config.temperature) and config.temperature > 0)


def test_a_run_whose_loss_diverges_stops_with_one_line_and_saves_no_model(cli, data, tmp_path):
    out = tmp_path / "model"
    result = cli("finetune", "-d", str(data), *TINY, "--freeze", "none", "--epochs", "3", "--lr", "1e30",
                 "--optimizer", "sgd", "--batch-size", "4", "-o", str(out))
    assert_one_error(result, "the training loss became", "no model was saved")
    assert not (out / "transferlab.json").exists() and not (out / "model.safetensors").exists()
