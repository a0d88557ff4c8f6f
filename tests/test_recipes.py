"""``--recipe fast|default|best``: each recipe's values reach the training loop, an explicit option beats them,
and the recipe is part of a run's identity and its result.

The backbone is timm's tiny ``test_efficientnet`` loaded from a weights file, so it counts as pretrained (the
recipe's freeze policy applies, as it does to real backbones); a spy around the engine's ``fit`` records what
each stage is asked to do and trains one epoch of it.
"""

from __future__ import annotations

import json

import pytest

from transferlab.engine.learner import Learner
from transferlab.engine.callbacks import EarlyStopping
from transferlab.finetune import FinetuneConfig
from transferlab.finetune.freeze import plan_stages
from transferlab.finetune.recipes import FEW_PER_CLASS, RECIPES
from transferlab.finetune.run import config_id, finetune, resolved
from transferlab.study.identity import run_id
from helpers import make_class_folders
from wiring import wires


@pytest.fixture
def stages(monkeypatch):
    """What ``fit`` is asked per stage: epochs, head and top-unit rates, label smoothing, BatchNorm mode, inputs."""
    seen: list[dict] = []
    real_fit = Learner.fit

    def spy(learner, epochs, stage, *args):
        optimizer = learner.opt_func(learner.model, stage)
        rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
        seen.append({"stage": stage.name, "epochs": epochs, "head_lr": rates["head"],
                     "unit_lrs": [lr for name, lr in rates.items() if name != "head"],
                     "label_smoothing": learner.loss_fn.label_smoothing, "train_bn": learner.model.train_bn,
                     "inputs": type(learner.train).__name__,
                     "augment": repr(getattr(learner.train, "transform", None)),
                     "monitor": [c.monitor for c in learner.callbacks if isinstance(c, EarlyStopping)][0],
                     "margin": [c.baseline_margin for c in learner.callbacks if isinstance(c, EarlyStopping)][0],
                     "val_images": len(learner.val)})
        return real_fit(learner, 1, stage, *args)

    monkeypatch.setattr(Learner, "fit", spy)
    return seen


def tuned(data, output, weights, **options):
    return finetune(data, backbone="test_efficientnet", weights=weights, batch_size=8, num_workers=0,
                        output=str(output), lr=1e-3, patience=3, **options)  # patience: stop on 9 images


@pytest.fixture
def blurred_classes(tmp_path):
    """Four classes, a and d of one colour: the probe's head is right on about 3 of 4 validation images, so
    stage 2 has something to gain and runs (on perfectly separable data it is skipped). 30 images per class: 21
    to train on, the recipes' usual values (their small-set values have tests of their own)."""
    return make_class_folders(tmp_path / "data", {"a": 30, "b": 30, "c": 30, "d": 30})


@wires("FinetuneConfig.recipe")
@pytest.mark.parametrize("name", ["fast", "default", "best"])
def test_each_recipes_values_reach_the_loop(blurred_classes, tmp_path, weights, stages, name):
    recipe = RECIPES[name]
    result = tuned(blurred_classes, tmp_path / name, weights, recipe=name)

    assert result.train_images / 4 >= FEW_PER_CLASS
    values = recipe
    assert recipe.head_init == "probe" and result.history[0]["head_fit"] == "logreg"
    (fine,) = stages  # stage 1 is the probe's regression, fitted without the loop
    assert fine["stage"] == "fine-tune" and fine["epochs"] == values.stage2_epochs
    assert fine["head_lr"] == pytest.approx(1e-3 * recipe.stage2_lr_ratio)
    assert fine["unit_lrs"][0] == pytest.approx(1e-3 * recipe.stage2_lr_ratio)
    assert fine["label_smoothing"] == values.label_smoothing
    assert ("RandAugment" in fine["augment"]) == ("randaugment" in values.augment)
    assert fine["train_bn"] is False
    assert fine["inputs"] == ("DecodedInputs" if recipe.augment else "CachedInputs")
    assert fine["monitor"] == recipe.early_stopping
    margin = (recipe.keep_margin + 0.5) / fine["val_images"] if recipe.keep_margin else 0.0  # fast: 2 images
    assert fine["margin"] == pytest.approx(margin)
    units = result.backbone_layers
    frozen = plan_stages(recipe.freeze, units)[-1].frozen_units  # fast: all but the top; default and best: none
    assert result.frozen_layers == frozen and len(fine["unit_lrs"]) == units - frozen
    per_unit = (1 / recipe.stage2_spread) ** (1 / (units - 1))  # the stem `spread` times below the top unit
    assert all(low / high == pytest.approx(per_unit) for high, low in zip(fine["unit_lrs"], fine["unit_lrs"][1:]))
    assert result.recipe.startswith(f"{name} (") and "given" not in result.recipe
    assert "under" not in result.recipe


def test_fast_on_under_20_images_per_class_is_the_probe(tmp_path, weights, cli, stages):
    """Under 20 training images per class ``fast`` has no stage 2: the loop never trains, and the run ends with the
    probe's head, fitted again on the training and validation images as the probe fits it, so the test images
    are predicted as the probe predicts them, and the result says why."""
    data = tmp_path / "data"
    make_class_folders(data / "train", {k: 19 for k in "abcd"})
    make_class_folders(data / "test", {k: 12 for k in "abcd"}, seed=7)
    common = ("--data", str(data), "--backbone", "test_efficientnet", "--weights", weights, "--batch-size", "8",
              "--workers", "0", "--precision", "fp32", "--json")
    probed = cli("probe", *common, "--head", "logreg", "--predictions", "--no-cache")
    tuned = cli("finetune", *common, "--recipe", "fast", "--output", str(tmp_path / "m"))
    assert probed.returncode == 0 and tuned.returncode == 0, probed.stderr + tuned.stderr
    probe, result = json.loads(probed.stdout), json.loads(tuned.stdout)
    assert stages == [] and {h["stage"] for h in result["history"]} == {"head"}
    assert result["train_images"] / 4 < FEW_PER_CLASS and "(under 20): no stage 2" in result["recipe"]
    assert any("fitted again on the 76 training and validation images" in n for n in result["notes"])
    ours, theirs = ({p["path"]: p["predicted"] for p in r["predictions"]} for r in (result, probe))
    assert len(ours) == 48 and sum(ours[k] != theirs[k] for k in ours) <= 1  # a near-tie may fall either way:
    # the probe's features come from one pass, the fine-tune's from separate training and validation passes


def test_the_default_trains_longer_and_harder_on_under_20_images_per_class(tmp_path, weights, stages):
    """Under 20 training images per class stage 2 runs the default's small-set values; above, its usual ones. The
    class sizes are the only difference; what the loop received tells them apart."""
    default, few = RECIPES["default"], RECIPES["default"].few
    runs = {}
    for per_class in (19, 40):  # split 70/15/15: about 13 and 28 per class to train on
        data = make_class_folders(tmp_path / f"data{per_class}", {k: per_class for k in "abcd"})
        runs[per_class] = tuned(data, tmp_path / f"m{per_class}", weights)
    small, large = (s for s in stages if s["stage"] == "fine-tune")
    assert runs[19].train_images / 4 < FEW_PER_CLASS <= runs[40].train_images / 4
    assert (small["epochs"], small["label_smoothing"]) == (few.stage2_epochs, few.label_smoothing)
    assert (large["epochs"], large["label_smoothing"]) == (default.stage2_epochs, default.label_smoothing)
    assert "RandAugment" in small["augment"] and "RandAugment" not in large["augment"]
    assert f"{runs[19].train_images / 4:.3g} training images per class (under 20)" in runs[19].recipe
    assert "under" not in runs[40].recipe


def test_explicit_options_beat_the_recipe(class_folders, tmp_path, weights, stages):
    result = tuned(class_folders, tmp_path / "m", weights, recipe="best", epochs=2, stage2_epochs=3, head_init="sgd",
                   stage2_lr=3e-4, label_smoothing=0.0, augment=[], freeze="two-stage:top:2", early_stopping="none")

    head, fine = stages
    assert (head["epochs"], fine["epochs"]) == (2, 3)
    assert fine["head_lr"] == pytest.approx(3e-4) and len(fine["unit_lrs"]) == 2
    assert fine["label_smoothing"] == 0.0 and fine["inputs"] == "CachedInputs" and fine["monitor"] == "none"
    assert result.recipe.endswith("given: freeze, epochs, stage2_epochs, stage2_lr, label_smoothing, augment, "
                                  "early_stopping, head_init")


def test_a_run_without_a_recipe_takes_the_defaults_values():
    config = resolved(FinetuneConfig(data="digits", backbone="efficientnet_lite0"))
    default = RECIPES["default"]
    assert (config.recipe, config.freeze, config.epochs, config.stage2_epochs) == (
        "default", default.freeze, default.epochs, default.stage2_epochs)
    assert config.stage2_lr == pytest.approx(config.lr * default.stage2_lr_ratio)
    assert config.label_smoothing == default.label_smoothing and config.augment == list(default.augment)
    assert config.early_stopping == default.early_stopping and config.head_init == default.head_init


def test_the_recipe_is_in_the_run_id():
    ids = {name: FinetuneConfig(data="digits", recipe=name) for name in RECIPES}
    assert len({config_id(c) for c in ids.values()}) == 3
    assert len({run_id("finetune", c, "data") for c in ids.values()}) == 3


@pytest.mark.parametrize("change", [{"stage2_epochs": 6}, {"few": None}])
def test_a_changed_recipe_value_makes_its_runs_new_experiments(monkeypatch, change):
    """A study store or a checkpoint never hands back a result of a recipe's old values (the same config, the
    same transferlab version)."""
    from dataclasses import replace

    config = FinetuneConfig(data="digits", recipe="fast")
    before = config_id(config), run_id("finetune", config, "data")
    monkeypatch.setitem(RECIPES, "fast", replace(RECIPES["fast"], **change))
    after = config_id(config), run_id("finetune", config, "data")
    assert after[0] != before[0] and after[1] != before[1]


def test_recipe_on_the_command_line_reaches_the_result(cli, class_folders, tmp_path, weights, stages):
    out = cli("finetune", "--data", str(class_folders), "--backbone", "test_efficientnet", "--weights", weights,
              "--recipe", "fast", "--stage2-epochs", "2", "--workers", "0", "--output", str(tmp_path / "m"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["recipe"].startswith("fast (") and result["recipe"].endswith("given: stage2_epochs")
    assert [(s["stage"], s["epochs"]) for s in stages] == [("fine-tune", 2)]  # stage 1: the probe's regression


def test_stage2_epochs_0_ends_the_run_with_stage_1s_head(cli, class_folders, tmp_path, weights, stages):
    out = cli("finetune", "--data", str(class_folders), "--backbone", "test_efficientnet", "--weights", weights,
              "--stage2-epochs", "0", "--workers", "0", "--output", str(tmp_path / "m"), "--json")
    assert out.returncode == 0, out.stderr
    assert stages == [] and {h["stage"] for h in json.loads(out.stdout)["history"]} == {"head"}


@wires("FinetuneConfig.keep_margin")
def test_keep_margin_on_the_command_line_reaches_early_stopping(cli, class_folders, tmp_path, weights, stages):
    out = cli("finetune", "--data", str(class_folders), "--backbone", "test_efficientnet", "--weights", weights,
              "--keep-margin", "3", "--stage2-epochs", "1", "--workers", "0", "--output", str(tmp_path / "m"),
              "--json")
    assert out.returncode == 0, out.stderr
    (fine,) = stages
    assert fine["margin"] == pytest.approx(3.5 / fine["val_images"])  # more than 3 images: at least 4
    assert json.loads(out.stdout)["recipe"].endswith("given: stage2_epochs, keep_margin")


def test_an_unknown_recipe_is_one_error_line(cli):
    out = cli("finetune", "--data", "digits", "--recipe", "slow")
    assert out.returncode == 2 and "slow" in out.stderr and "Traceback" not in out.stderr


def test_augment_none_turns_the_recipes_augmentation_off(cli, class_folders, tmp_path, weights, stages):
    assert resolved(FinetuneConfig(data="digits", augment="none")).augment == []
    out = cli("finetune", "--data", str(class_folders), "--backbone", "test_efficientnet", "--weights", weights,
              "--augment", "none", "--head-init", "sgd", "--epochs", "1", "--workers", "0",
              "--output", str(tmp_path / "m"), "--json")
    assert out.returncode == 0, out.stderr
    assert [s["inputs"] for s in stages] == ["CachedInputs", "CachedInputs"]  # no stage augments


def test_the_small_set_values_adapt_only_the_recipes_own_stages():
    """A freeze policy given explicitly, or a run from scratch, keeps the recipe's usual values at any size."""
    few = RECIPES["default"].few
    assert resolved(FinetuneConfig(data="x"), 10).label_smoothing == few.label_smoothing
    assert resolved(FinetuneConfig(data="x"), 30).label_smoothing == RECIPES["default"].label_smoothing
    for given in ({"freeze": "two-stage:first:25%"}, {"backbone": "small-cnn"}):
        config = resolved(FinetuneConfig(data="x", **given), 10)
        assert (config.label_smoothing, config.stage2_epochs) == (0.0, RECIPES["default"].stage2_epochs)
