"""Fine-tuning, specified option by option: each test fails when the option's effect is removed.

Runs use timm's tiny ``test_efficientnet`` (random weights, 160 px) on three colour classes of
20 images each (train 42 / val 9 / test 9), so a run takes about a second.
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from helpers import make_class_folders
from transferlab.engine.loop import evaluate
from transferlab.errors import UserError
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.augment import train_transform
from transferlab.finetune.model import TransferModel
from transferlab.finetune.recipes import RECIPES
from transferlab.finetune.run import FinetuneRun

# the mechanisms, not the recipe: stage 1 trained by the loop, no augmentation unless a test asks for it
TINY = {"backbone": "test_efficientnet", "random_init": True, "batch_size": 8, "num_workers": 0, "head_init": "sgd",
        "augment": []}


def tiny_config(data, output, **overrides) -> FinetuneConfig:
    settings = {**TINY, "data": str(data), "output": str(output), "epochs": 2, "freeze": "half",
                "early_stopping": "none", **overrides}
    return FinetuneConfig(**settings)


def stage(history, name):
    return [h for h in history if h["stage"] == name]


def prepared(config) -> FinetuneRun:
    run = FinetuneRun(config)
    run.prepare()
    return run


# -- the model ---------------------------------------------------------------------------------------------------

def test_frozen_units_have_no_trainable_parameters():
    model = TransferModel.from_backbone(load_fresh("test_efficientnet"), num_classes=3)
    model.freeze(len(model.units))
    trainable, frozen = model.parameter_counts()
    assert trainable == sum(p.numel() for p in model.classifier.parameters())
    model.freeze(0)
    assert model.parameter_counts() == (trainable + frozen, 0)


def test_the_fine_tuned_model_is_the_timm_model_with_a_new_classifier():
    import timm

    model = TransferModel.from_backbone(load_fresh("test_efficientnet"), num_classes=3)
    plain = timm.create_model("test_efficientnet", num_classes=3)

    assert model.net.state_dict().keys() == plain.state_dict().keys()
    assert model.feature_dim == plain.num_features


def load_fresh(name):
    from transferlab.backbones import load_backbone

    return load_backbone(name, random_init=True)


def test_mlp_head_replaces_the_classifier_with_hidden_layers_and_dropout():
    model = TransferModel.from_backbone(load_fresh("test_efficientnet"), 3, "mlp:16,8", dropout=0.3)
    linears = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)]
    drops = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Dropout)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 16), (16, 8), (8, 3)]
    assert [d.p for d in drops] == [0.3, 0.3]
    assert model(torch.zeros(2, 3, 160, 160)).shape == (2, 3)


def test_flatten_pooling_feeds_the_whole_feature_map_to_the_head():
    model = TransferModel.from_backbone(load_fresh("test_efficientnet"), 3, pooling="flatten")
    assert model.feature_dim == 256 * 5 * 5
    assert model(torch.zeros(2, 3, 160, 160)).shape == (2, 3)


def test_frozen_batchnorm_keeps_its_running_statistics(class_folders, tmp_path):
    """Trained without the prefix cache, so frozen units really run inside model.train()."""
    run = prepared(tiny_config(class_folders, tmp_path / "run", prefix_cache=False, train_bn=True, freeze="half",
                               epochs=1))
    frozen_units = run.stages[0].frozen_units
    frozen = {n.rsplit(".", 1)[0] for u in run.model.units[:frozen_units] for n in u.parameter_names}
    before = {k: v.clone() for k, v in run.model.net.state_dict().items() if "running_mean" in k}
    run.train_stage(run.learner(), 0, run.stages[0], None)
    after = run.model.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not {k for k in changed if k.rsplit(".", 1)[0] in frozen}
    assert changed, "BatchNorm layers of trainable units should update their statistics"


def test_batchnorm_statistics_follow_the_weights_except_in_stage_two():
    from transferlab.finetune.run import resolved
    from transferlab.finetune.stages import plan

    def train_bn(config, stage=-1):
        return plan(resolved(config), 8, config.random_init)[stage].train_bn

    pretrained = FinetuneConfig(backbone="efficientnet_lite0", freeze="two-stage")
    assert train_bn(pretrained) is False
    assert train_bn(pretrained, 0) is True
    assert train_bn(replace_config(pretrained, freeze="half")) is True
    assert train_bn(replace_config(pretrained, train_bn=True)) is True
    assert train_bn(replace_config(pretrained, freeze="half", train_bn=False)) is False
    assert train_bn(replace_config(pretrained, random_init=True)) is True


@pytest.mark.parametrize("freeze, updated", [("top:1", True), ("two-stage:top:1", False)])
def test_trainable_units_update_their_statistics_except_in_stage_two(class_folders, tmp_path, freeze, updated):
    config = FinetuneConfig(data=str(class_folders), output=str(tmp_path / "m"), backbone="efficientnet_lite0",
                            freeze=freeze, epochs=1, per_class=4, num_workers=0, early_stopping="none")
    run = prepared(config)
    top = [n.replace("weight", "running_mean") for n in run.model.units[-1].parameter_names if "bn" in n and "weight" in n]
    before = {n: run.model.net.state_dict()[n].clone() for n in top}
    run.run()
    after = run.model.net.state_dict()
    assert top and all(torch.equal(before[n], after[n]) != updated for n in top)


def test_pretrained_batchnorm_statistics_stay_fixed_by_default(class_folders, tmp_path):
    """With train_bn off, even trainable units keep their BatchNorm statistics."""
    run = prepared(tiny_config(class_folders, tmp_path / "run", prefix_cache=False, train_bn=False, freeze="none",
                               epochs=1))
    before = {k: v.clone() for k, v in run.model.net.state_dict().items() if "running_" in k}
    run.train_stage(run.learner(), 0, run.stages[0], None)
    after = run.model.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# -- learning rates, optimizers, schedules ------------------------------------------------------------------------

def test_two_stage_gives_stage_two_the_lower_default_rates(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="two-stage", epochs=1, lr=1e-3))
    head, fine = stage(result.history, "head")[0], stage(result.history, "fine-tune")[0]
    assert head["lr"] == pytest.approx(1e-3) and "backbone_lr" not in head
    ratio = RECIPES["default"].stage2_lr_ratio  # the head at lr / 10
    assert fine["lr"] == pytest.approx(1e-3 * ratio)
    assert fine["backbone_lr"] == pytest.approx(1e-3 * ratio)  # the top unit too; the units below lower
    assert result.stage2_start_epoch == 2


def test_stage2_lr_sets_the_heads_rate_after_unfreezing(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="two-stage", epochs=1, stage2_lr=3e-4))
    fine = stage(result.history, "fine-tune")[0]
    assert fine["lr"] == pytest.approx(3e-4) and fine["backbone_lr"] == pytest.approx(3e-4)


def test_stage2_rates_fall_unit_by_unit_towards_the_stem(class_folders, tmp_path):
    run = prepared(tiny_config(class_folders, tmp_path / "m", freeze="two-stage"))
    assert run.stages[1].layer_decay ** (len(run.model.units) - 1) == pytest.approx(0.01)  # 100x from top to stem


def test_backbone_lr_is_the_rate_the_backbone_trains_at(class_folders, tmp_path):
    def backbone_change(**options):
        run = prepared(tiny_config(class_folders, tmp_path / str(len(options)), freeze="none", epochs=1, **options))
        before = {n: p.detach().clone() for u in run.model.units for n in u.parameter_names
                  for p in [dict(run.model.net.named_parameters())[n]]}
        run.run()
        params = dict(run.model.net.named_parameters())
        return max(float((params[n].detach() - before[n]).abs().max()) for n in before)

    assert backbone_change(backbone_lr=1e-12) < 1e-8
    assert backbone_change() > 1e-5


def test_layer_decay_multiplies_the_rate_unit_by_unit(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="none", epochs=1, lr=1e-3,
                                      layer_decay=0.5))
    from transferlab.finetune.optim import param_groups

    run = prepared(tiny_config(class_folders, tmp_path / "p", freeze="none", layer_decay=0.5))
    run.model.freeze(0)
    groups = param_groups(run.model, 1e-3, 1e-3, 0.5, 0.0)
    by_unit = {g["name"]: g["lr"] for g in groups}
    n = len(run.model.units)
    assert by_unit[f"unit {n - 1}"] == pytest.approx(1e-3) and by_unit["unit 0"] == pytest.approx(1e-3 * 0.5 ** (n - 1))
    assert result.history[0]["backbone_lr"] == pytest.approx(1e-3)


def test_weight_decay_spares_norms_and_biases(class_folders, tmp_path):
    from transferlab.finetune.optim import param_groups

    run = prepared(tiny_config(class_folders, tmp_path / "p", freeze="none"))
    run.model.freeze(0)
    groups = param_groups(run.model, 1e-3, 1e-3, 1.0, 0.05)
    assert {g["weight_decay"] for g in groups} == {0.0, 0.05}
    assert all(p.ndim <= 1 for g in groups if g["weight_decay"] == 0.0 for p in g["params"])
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] == 0.05 for p in g["params"])


@pytest.mark.parametrize("name, expected", [("sgd", "SGD"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"),
                                            ("adam", "Adam")])
def test_optimizer_names_give_those_optimizers(class_folders, tmp_path, name, expected):
    from transferlab.finetune.optim import build_optimizer

    run = prepared(tiny_config(class_folders, tmp_path / "p", optimizer=name))
    optimizer = build_optimizer(run.model, name, 1e-3, 1e-3)
    assert type(optimizer).__name__ == expected
    if name == "sgd":
        assert optimizer.defaults["momentum"] == 0.9 and not optimizer.defaults["nesterov"]


def test_an_unknown_optimizer_is_a_user_error(class_folders, tmp_path):
    with pytest.raises(UserError, match="unknown optimizer 'adamx'"):
        run_finetune(tiny_config(class_folders, tmp_path / "m", optimizer="adamx"))


def test_cosine_schedule_lowers_the_rate_epoch_by_epoch_and_constant_keeps_it(class_folders, tmp_path):
    cosine = run_finetune(tiny_config(class_folders, tmp_path / "c", schedule="cosine", epochs=3, lr=1e-3))
    constant = run_finetune(tiny_config(class_folders, tmp_path / "k", schedule="constant", epochs=3, lr=1e-3))
    rates = [h["lr"] for h in cosine.history]
    assert rates[0] == pytest.approx(1e-3) and rates[0] > rates[1] > rates[2] > 0
    assert rates[2] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 3)), rel=0.05)
    assert [h["lr"] for h in constant.history] == pytest.approx([1e-3] * 3)


def test_one_cycle_warms_up_then_anneals(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "o", schedule="one-cycle", epochs=3, lr=1e-3))
    rates = [h["lr"] for h in result.history]
    assert rates[0] < 1e-3 / 5 and max(rates) > rates[0]


def test_warmup_starts_each_stage_low(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "w", warmup_epochs=2, epochs=3, lr=1e-3))
    rates = [h["lr"] for h in result.history]
    assert rates[0] < 1e-3 / 5 and rates[1] == pytest.approx(1e-3 * 7 / 12, rel=0.05) and rates[2] == pytest.approx(1e-3)


# -- epochs, early stopping and the weights a run ends with -------------------------------------------------------

def test_epochs_and_stage2_epochs_count_the_epochs_of_each_stage(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="two-stage", epochs=2, stage2_epochs=3))
    assert [h["stage"] for h in result.history] == ["head"] * 2 + ["fine-tune"] * 3
    assert result.epochs_run == 5 and result.stage2_start_epoch == 3


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """A head trained with a rate so high that its validation loss jumps around: the best epoch is not the last."""
    root = tmp_path_factory.mktemp("noisy")
    data = make_class_folders(root / "data", {"a": 20, "b": 20, "c": 20})
    config = tiny_config(data, root / "m", freeze="all", epochs=8, lr=1.0, optimizer="sgd",
                         early_stopping="val_loss", patience=20)
    run = prepared(config)
    return run, run.run()


def test_early_stopping_restores_the_best_epochs_weights(noisy_run):
    run, result = noisy_run
    losses = [h["val_loss"] for h in result.history]
    best = losses.index(min(losses))
    assert best != len(losses) - 1, "the test needs a run whose last epoch is not its best"
    val = run.stage_inputs(run.val_samples, "val", training=False)
    ended = evaluate(run.model, val, run.runtime, 8)
    assert ended["loss"] == pytest.approx(min(losses), rel=1e-4)


def test_best_epoch_is_the_epoch_whose_weights_were_kept(noisy_run):
    _, result = noisy_run
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1 != len(losses)


def test_early_stopping_on_validation_accuracy_keeps_the_most_accurate_epoch(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="all", epochs=6, lr=3.0, optimizer="sgd",
                                      early_stopping="val_accuracy", patience=20))
    accuracies = [h["val_accuracy"] for h in result.history]
    assert result.history[result.best_epoch - 1]["val_accuracy"] == max(accuracies)
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1


def test_patience_stops_after_that_many_epochs_without_improvement(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="all", epochs=30, lr=3.0, optimizer="sgd",
                                      early_stopping="val_loss", patience=2))
    losses = [h["val_loss"] for h in result.history]
    best = losses.index(min(losses))
    assert result.epochs_run == best + 3 < 30


def test_without_early_stopping_the_last_epoch_is_kept(noisy_run, tmp_path):
    run, _ = noisy_run
    result = run_finetune(replace_config(run.config, early_stopping="none", output=str(tmp_path / "n")))
    assert result.epochs_run == 8 and result.best_epoch == 8


def replace_config(config, **changes):
    from dataclasses import replace

    return replace(config, **changes)


def test_a_loss_that_is_not_finite_stops_the_run_without_saving_a_model(class_folders, tmp_path):
    with pytest.raises(UserError, match="lower the learning rate"):
        run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="none", lr=1e30, optimizer="sgd"))
    assert not (tmp_path / "m" / "transferlab.json").exists()


# -- the loss ----------------------------------------------------------------------------------------------------

@pytest.fixture
def imbalanced(tmp_path):
    return make_class_folders(tmp_path / "imbalanced", {"a": 30, "b": 6, "c": 6})


def test_class_weights_weigh_the_loss_by_inverse_class_frequency(imbalanced, tmp_path):
    plain = run_finetune(tiny_config(imbalanced, tmp_path / "p", epochs=1))
    weighted = run_finetune(tiny_config(imbalanced, tmp_path / "w", epochs=1, class_weights=True))
    assert weighted.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], rel=1e-3)
    run = prepared(tiny_config(imbalanced, tmp_path / "r", class_weights=True))
    weights = run.loss_fn.weight
    assert weights[0] < weights[1] == pytest.approx(weights[2])


def test_label_smoothing_raises_the_loss_of_confident_predictions(class_folders, tmp_path):
    run = prepared(tiny_config(class_folders, tmp_path / "r", label_smoothing=0.2))
    logits, target = torch.tensor([[10.0, 0.0, 0.0]]), torch.tensor([0])
    assert float(run.loss_fn(logits, target)) > 1.0
    assert float(prepared(tiny_config(class_folders, tmp_path / "s")).loss_fn(logits, target)) < 1e-3


@pytest.mark.parametrize("option", ["mixup", "cutmix"])
def test_mixup_and_cutmix_train_on_mixed_images_and_soft_targets(class_folders, tmp_path, option):
    run = prepared(tiny_config(class_folders, tmp_path / "r", **{option: 1.0}))
    x = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(4)])
    mixed, targets = run.mix(x.clone(), torch.tensor([0, 1, 2, 0]))
    assert targets.shape == (4, 3) and not torch.equal(mixed, x)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", epochs=1, **{option: 1.0}))
    assert result.history[0]["train_loss"] > 0


def test_class_weights_with_mixup_is_a_user_error(class_folders, tmp_path):
    with pytest.raises(UserError, match="cannot be combined"):
        run_finetune(tiny_config(class_folders, tmp_path / "m", mixup=0.2, class_weights=True))


# -- augmentation -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def half_white():
    """A picture whose left half is white and right half black: a flip is visible."""
    image = Image.new("RGB", (64, 64), "black")
    image.paste((255, 255, 255), (0, 0, 32, 64))
    return image


DATA_CONFIG = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3,
               "crop_pct": 1.0}


def left_is_bright(tensor):
    return float(tensor[:, :, :16].mean()) > float(tensor[:, :, 16:].mean())


@pytest.mark.parametrize("others", [[], ["crop"], ["crop", "rotate"]])
def test_flip_mirrors_some_training_images_and_no_flip_none(half_white, others):
    torch.manual_seed(0)
    flipping = train_transform(DATA_CONFIG, ["flip", *others])
    seen = {left_is_bright(flipping(half_white)) for _ in range(20)}
    assert seen == {True, False}
    not_flipping = train_transform(DATA_CONFIG, others or ["rotate"])
    assert all(left_is_bright(not_flipping(half_white)) for _ in range(20))


def test_crop_takes_random_parts_and_rotate_turns_the_image(half_white):
    torch.manual_seed(0)
    plain = train_transform(DATA_CONFIG, ["flip"])
    crop = train_transform(DATA_CONFIG, ["crop"])
    crops = [crop(half_white) for _ in range(5)]
    assert any(not torch.allclose(crops[0], c) for c in crops[1:])
    rotate = train_transform(DATA_CONFIG, ["rotate"])
    assert any(not torch.allclose(rotate(half_white), plain(half_white)) and
               not torch.allclose(rotate(half_white), plain(half_white).flip(-1)) for _ in range(5))


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment"])
def test_policy_augmentations_change_the_image(half_white, name):
    torch.manual_seed(0)
    transform = train_transform(DATA_CONFIG, [name])
    outputs = [transform(half_white) for _ in range(8)]
    assert any(not torch.allclose(outputs[0], o) for o in outputs[1:])


def test_no_augmentation_trains_on_the_evaluation_transform():
    assert train_transform(DATA_CONFIG, []) is None


def test_augmentation_bypasses_the_prefix_cache_and_unknown_names_are_user_errors(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "aug", augment=["flip", "rotate", "crop"], epochs=1))
    assert not result.prefix_cache_used
    with pytest.raises(UserError, match="augmentation"):
        FinetuneConfig(augment=["sharpen"])


# -- the frozen-prefix cache, resume, seeds -----------------------------------------------------------------------

@pytest.mark.parametrize("freeze", ["half", "all", "none"])
def test_prefix_cache_gives_the_same_training_as_recomputing(class_folders, tmp_path, freeze):
    cached = run_finetune(tiny_config(class_folders, tmp_path / "cached", freeze=freeze, prefix_cache=True))
    recomputed = run_finetune(tiny_config(class_folders, tmp_path / "recomputed", freeze=freeze, prefix_cache=False))
    assert cached.prefix_cache_used and not recomputed.prefix_cache_used
    for a, b in zip(cached.history, recomputed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    weights_a = load_bundle(tmp_path / "cached").net.state_dict()
    weights_b = load_bundle(tmp_path / "recomputed").net.state_dict()
    for name in weights_a:
        assert torch.allclose(weights_a[name].float(), weights_b[name].float(), atol=1e-4), name


def test_the_cache_starts_after_the_frozen_units(class_folders, tmp_path):
    run = prepared(tiny_config(class_folders, tmp_path / "r", freeze="half"))
    run.model.freeze(run.stages[0].frozen_units)
    inputs = run.stage_inputs(run.train_samples, "train", training=True)
    assert inputs.start == run.model.path.prefix_steps(run.stages[0].frozen_units) > 0
    assert inputs.values.shape[1:] != (3, 160, 160)


def test_resume_after_an_interruption_ends_like_an_uninterrupted_run(class_folders, tmp_path):
    whole = run_finetune(tiny_config(class_folders, tmp_path / "whole", freeze="two-stage", epochs=2))

    def interrupt_after_second_epoch(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    config = tiny_config(class_folders, tmp_path / "cut", freeze="two-stage", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, on_epoch=interrupt_after_second_epoch)
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    resumed = run_finetune(tiny_config(class_folders, tmp_path / "cut", freeze="two-stage", epochs=2, resume=True))
    assert resumed.epochs_run == whole.epochs_run == 4
    assert resumed.stage2_start_epoch == whole.stage2_start_epoch == 3
    assert resumed.accuracy == whole.accuracy
    for a, b in zip(resumed.history, whole.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert not (tmp_path / "cut" / "checkpoint.pt").exists(), "a finished run removes its checkpoint"


def test_resume_refuses_a_checkpoint_of_other_settings(class_folders, tmp_path):
    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_finetune(tiny_config(class_folders, tmp_path / "run"), on_epoch=stop)
    with pytest.raises(UserError, match="other settings"):
        run_finetune(tiny_config(class_folders, tmp_path / "run", lr=0.5, resume=True))


def test_a_saved_model_is_never_overwritten(class_folders, tmp_path):
    first = run_finetune(tiny_config(class_folders, tmp_path / "m", epochs=1))
    saved = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match="already holds a saved model"):
        run_finetune(tiny_config(class_folders, tmp_path / "m", epochs=1, lr=0.1))
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == saved and first.model_path == str(tmp_path / "m")


def test_an_interrupted_runs_checkpoint_is_kept_when_resume_is_left_off(class_folders, tmp_path):
    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_finetune(tiny_config(class_folders, tmp_path / "run"), on_epoch=stop)
    checkpoint = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="add --resume"):
        run_finetune(tiny_config(class_folders, tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == checkpoint


def test_an_unwritable_model_folder_fails_before_training(class_folders, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    epochs = []
    with pytest.raises(UserError, match="cannot write the model folder"):
        run_finetune(tiny_config(class_folders, tmp_path / "file" / "m"), on_epoch=epochs.append)
    assert epochs == []


def test_the_same_seed_repeats_a_run_and_another_seed_does_not(class_folders, tmp_path):
    a = run_finetune(tiny_config(class_folders, tmp_path / "a", head="mlp:16"))
    b = run_finetune(tiny_config(class_folders, tmp_path / "b", head="mlp:16"))
    c = run_finetune(tiny_config(class_folders, tmp_path / "c", head="mlp:16", seed=1))
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


def test_speed_only_settings_keep_the_run_id_and_result_settings_change_it(class_folders, tmp_path):
    from transferlab.finetune.run import config_id

    base = tiny_config(class_folders, tmp_path / "a")
    assert config_id(base) == config_id(replace_config(base, prefix_cache=False, num_workers=2, output="x",
                                                       resume=True, device="cpu"))
    assert config_id(base) != config_id(replace_config(base, lr=0.01))
    assert config_id(base) != config_id(replace_config(base, precision="bf16"))


# -- data options ----------------------------------------------------------------------------------------------------

def test_per_class_classes_and_num_classes_choose_the_training_images(tmp_path):
    data = make_class_folders(tmp_path / "d", {"a": 20, "b": 20, "c": 20, "d": 20})
    few = run_finetune(tiny_config(data, tmp_path / "few", per_class=5, epochs=1))
    picked = run_finetune(tiny_config(data, tmp_path / "picked", classes=["b", "d"], epochs=1))
    first = run_finetune(tiny_config(data, tmp_path / "first", num_classes=2, epochs=1))
    assert few.train_images == 20
    assert picked.classes == ["b", "d"] and first.classes == ["a", "b"]


def test_split_ratios_decide_the_test_share(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", ratios=(0.5, 0.1, 0.4), epochs=1))
    assert result.test_images == 24


# -- results, bundles ---------------------------------------------------------------------------------------------

def test_result_counts_parameters_like_a_keras_summary(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="all", epochs=1, precision="bf16"))
    assert result.frozen_layers == result.backbone_layers
    assert result.trainable_parameters == result.feature_dim * 3 + 3  # the linear head only
    assert result.total_parameters == result.trainable_parameters + result.frozen_parameters
    assert result.runtime["device"] == "cpu" and result.runtime["precision"] == "bf16"


def test_small_cnn_trains_from_scratch_with_nothing_frozen(class_folders, tmp_path):
    result = run_finetune(FinetuneConfig(data=str(class_folders), backbone="small-cnn", epochs=3,
                                         output=str(tmp_path / "scratch"), num_workers=0))
    assert result.freeze == "none" and result.frozen_parameters == 0
    assert result.accuracy > 0.5  # three colours: easy even from scratch


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be at least 1"), ("epochs", -1, "epochs must be at least 1"),
    ("lr", -1.0, "lr must be greater than 0"), ("lr", float("nan"), "lr must be a finite number"),
    ("stage2_epochs", -3, "stage2_epochs must be at least 0"), ("dropout", 1.5, "dropout must be at most"),
    ("head", "mlp:0", "mlp hidden sizes"), ("head", "svm", "unknown head 'svm'"),
    ("freeze", "first:x", "not a whole number"), ("batch_size", 0, "batch_size must be at least 1"),
    ("schedule", "step", "unknown schedule"), ("layer_decay", 1.5, "layer_decay must be at most 1"),
])
def test_out_of_range_options_are_user_errors_when_the_config_is_made(field, value, message):
    with pytest.raises(UserError, match=message):
        FinetuneConfig(**{field: value})


def test_a_freeze_count_beyond_the_backbones_units_is_a_user_error(class_folders, tmp_path):
    with pytest.raises(UserError, match="test_efficientnet has 6 freeze units; use a share such as first:50%"):
        run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="first:100"))
