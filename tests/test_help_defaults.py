"""What ``probe --help`` and ``finetune --help`` say a default is, is what a run does.

Two kinds of default are shown: click's ``[default: X]`` of an option with a value (it must read back
as the record's default), and the prose ``(default ...)`` of an option whose record default is None,
left for the run to decide (it must name what the code decides: the patience, a head's C and weight
decay, the workers, stage 2's rate, ``--precision auto``'s choice on this machine).
"""

from __future__ import annotations

import dataclasses
import re

import click
import pytest

from transferlab.cli.main import main
from transferlab.finetune.config import FinetuneConfig
from transferlab.probing.config import ProbeConfig

CONFIGS = {"probe": ProbeConfig, "finetune": FinetuneConfig}


def help_records(command: str) -> dict[str, tuple[click.Option, str]]:
    """Each option's help line exactly as ``--help`` renders it, by parameter name."""
    cmd = main.commands[command]
    ctx = cmd.make_context(command, ["-d", "somewhere"])
    return {p.name: (p, p.get_help_record(ctx)[1]) for p in cmd.params if isinstance(p, click.Option)}


def record_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def shown_default(help_text: str) -> str | None:
    match = re.search(r"\[default: ([^;\]]+)[;\]]", help_text)
    return match.group(1).strip("()") if match else None  # a custom text shows as (TEXT)


@pytest.mark.parametrize("command", CONFIGS)
def test_the_default_help_shows_reads_back_as_the_records_default(command):
    records = help_records(command)
    checked = 0
    for field in dataclasses.fields(CONFIGS[command]):
        if not field.metadata.get("cli", True) or field.name == "data":
            continue
        option, text = records[field.name]
        expected, shown = record_default(field), shown_default(text)
        if expected is None or expected == [] or expected is False:
            assert shown is None, f"--help shows {command} {field.name} default {shown!r}, the record has {expected!r}"
            continue
        assert shown is not None, f"--help hides {command} {field.name}'s default {expected!r}"
        if option.is_bool_flag:  # click shows the flag that is on by default
            value = shown in {o.lstrip("-") for o in option.opts}
        else:
            value = option.type_cast_value(None, shown)
        if isinstance(expected, tuple):
            value = tuple(value)
        assert value == expected, f"{command} --help: {field.name} [default: {shown}], the record has {expected!r}"
        checked += 1
    assert checked >= 10


def help_of(command: str, name: str) -> str:
    return " ".join(help_records(command)[name][1].split())


def test_the_prose_defaults_are_what_the_code_does():
    from transferlab.data.loading import default_workers
    from transferlab.engine.callbacks import DEFAULT_PATIENCE
    from transferlab.finetune.recipes import FEW_PER_CLASS, RECIPES
    from transferlab.finetune.run import default_policy
    from transferlab.heads import make_head
    from transferlab.heads.spec import HEAD_WEIGHT_DECAY

    assert f"default {DEFAULT_PATIENCE};" in help_of("finetune", "patience")
    assert f"default {DEFAULT_PATIENCE};" in help_of("probe", "head_patience")
    logreg, svm = make_head("logreg"), make_head("svm")
    assert f"logreg (default {logreg[-1].C:g}) or svm (default {svm[-1].C:g})" in help_of("probe", "C")
    decay = HEAD_WEIGHT_DECAY
    assert decay["linear"] == decay["mlp"]
    said = re.search(r"default ([\d.e-]+), softmax ([\d.e-]+)\)", help_of("probe", "head_weight_decay"))
    assert said and (float(said[1]), float(said[2])) == (decay["mlp"], decay["softmax"])
    ratios = {name: round(1 / recipe.stage2_lr_ratio) for name, recipe in RECIPES.items()}
    assert ratios["best"] == ratios["default"]
    assert (f"the recipe's: --lr / {ratios['default']}; --lr / {ratios['fast']} for fast"
            in help_of("finetune", "stage2_lr"))
    few = RECIPES["default"].few
    epochs = {name: recipe.stage2_epochs for name, recipe in RECIPES.items()}
    assert few.stage2_epochs == epochs["best"]
    assert (f"the recipe's: {epochs['default']}; {epochs['best']} for best, and for default under "
            f"{FEW_PER_CLASS} training images per class; {epochs['fast']} for fast" in help_of("finetune",
                                                                                             "stage2_epochs"))
    assert few.label_smoothing == RECIPES["best"].label_smoothing and few.augment == RECIPES["best"].augment
    assert (f"the recipe's: {RECIPES['default'].label_smoothing:g}; {few.label_smoothing:g} for best, and for "
            f"default under {FEW_PER_CLASS}" in help_of("finetune", "label_smoothing"))
    policies = {name: default_policy(FinetuneConfig(data="x", recipe=name)) for name in RECIPES}
    assert (f"default: the recipe's: {policies['default']} for default, {policies['fast']} for fast, "
            f"{policies['best']} for best;" in help_of("finetune", "freeze"))
    augments = {name: ",".join(recipe.augment) or "none" for name, recipe in RECIPES.items()}
    assert (f"the recipe's: {augments['default']}; {augments['best']} for best, and for default under "
            f"{FEW_PER_CLASS} training images per class; {augments['fast']} for fast" in help_of("finetune", "augment"))
    monitors = {recipe.early_stopping for recipe in RECIPES.values()}
    assert len(monitors) == 1 and f"the recipe's: {monitors.pop()} in every recipe" in help_of("finetune",
                                                                                             "early_stopping")
    spreads = {name: f"{recipe.stage2_spread:g}x" for name, recipe in RECIPES.items()}
    assert spreads["fast"] == spreads["default"]
    assert (f"{spreads['default']} from the top unit to the stem, {spreads['best']} for best"
            in help_of("finetune", "layer_decay"))
    assert default_policy(FinetuneConfig(data="x", backbone="small-cnn")) == "none"
    assert "none from scratch" in help_of("finetune", "freeze")
    import os

    assert default_workers() == max(1, min(4, (os.cpu_count() or 2) - 1))
    assert "cores - 1, at most 4" in help_of("probe", "num_workers")


@pytest.mark.parametrize("command", CONFIGS)
def test_precision_help_says_what_auto_picks_on_this_cpu(command):
    from transferlab.engine.runtime import native_bf16, resolve_runtime

    text = help_of(command, "precision")
    picked = resolve_runtime("cpu", "auto").precision

    assert "on a CPU bf16 where it computes bf16 natively, else fp32" in text
    assert "fp32 on a CPU)" not in text
    assert picked == ("bf16" if native_bf16() else "fp32")
    assert "on CUDA bf16 where supported, else fp16" in text
