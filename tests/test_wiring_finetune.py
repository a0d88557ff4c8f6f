"""Every fine-tuning option reaches the loop: each test runs the real ``finetune`` and looks at what its steps got.

The steps are recorded at the engine's boundary (``wiring.Recorder``): the batch the model saw, the labels
and targets, the loss, the optimizer's groups and rates per step, the BatchNorm layers' mode, the callbacks
and input source the loop was given. Tiny random network, 32 px, 18 made images: about a second a run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wiring import FINETUNE, Recorder, digest, one_thread, rates, small_folder, split_folder, wires  # noqa: F401
from transferlab.errors import UserError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return small_folder(tmp_path_factory.mktemp("wiring") / "data")


@pytest.fixture
def rec(monkeypatch) -> Recorder:
    return Recorder(monkeypatch)


def run(rec: Recorder, data: Path, output: Path, **options):
    """``finetune`` on ``data`` with the tiny settings and ``options``: (result, what the loop got)."""
    from transferlab.finetune.run import finetune

    rec.take()
    result = finetune(str(data), output=str(output), **{**FINETUNE, **options})
    return result, rec.take()


def unit_rates(step) -> list[float]:
    """The backbone units' rates from the top unit down."""
    units = sorted((int(name.split()[1]), lr) for name, lr in rates(step).items() if name.startswith("unit"))
    return [lr for _, lr in reversed(units)]


# -- the optimizer: groups, rates, schedules ---------------------------------------------------------------------

@wires("FinetuneConfig.lr")
def test_lr_is_the_heads_rate_and_the_backbones_in_a_single_stage(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", lr=0.05)
    assert seen.steps
    for step in seen.steps:
        assert rates(step)["head"] == pytest.approx(0.05)
        assert unit_rates(step) == pytest.approx([0.05] * 6)


@wires("FinetuneConfig.backbone_lr")
def test_backbone_lr_is_the_top_units_rate(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", lr=0.05, backbone_lr=0.002)
    for step in seen.steps:
        assert rates(step)["head"] == pytest.approx(0.05)
        assert unit_rates(step) == pytest.approx([0.002] * 6)


@wires("FinetuneConfig.layer_decay")
@pytest.mark.parametrize("freeze, stage", [("none", "train"), ("top:3", "train"), ("two-stage", "fine-tune")])
def test_layer_decay_lowers_each_unit_below_the_top_in_every_stage(rec, data, tmp_path, freeze, stage):
    _, seen = run(rec, data, tmp_path / "m", freeze=freeze, lr=0.1, backbone_lr=0.01, layer_decay=0.5)
    steps = seen.stage_steps(stage)
    assert steps
    for step in steps:
        found = unit_rates(step)
        assert len(found) >= 3
        assert found == pytest.approx([0.01 * 0.5**depth for depth in range(len(found))])


@wires("FinetuneConfig.stage2_lr")
def test_stage2_lr_is_the_rate_after_unfreezing(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="two-stage", lr=0.1, stage2_lr=0.003)
    assert all(rates(s)["head"] == pytest.approx(0.1) for s in seen.stage_steps("head"))
    fine = seen.stage_steps("fine-tune")
    assert fine
    for step in fine:
        assert rates(step)["head"] == pytest.approx(0.003)
        assert unit_rates(step)[0] == pytest.approx(0.003)
        assert unit_rates(step)[-1] == pytest.approx(0.003 / 100)  # the default spread: 100x down to the stem


@wires("FinetuneConfig.optimizer")
def test_optimizer_is_the_one_that_steps(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="none")
    assert {s.optimizer for s in seen.steps} == {"Adam"}
    _, seen = run(rec, data, tmp_path / "b", freeze="none", optimizer="sgd")
    assert {s.optimizer for s in seen.steps} == {"SGD"}


@wires("FinetuneConfig.stage2_optimizer")
def test_stage2_optimizer_steps_after_unfreezing(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="two-stage", optimizer="adam", stage2_optimizer="rmsprop")
    assert {s.optimizer for s in seen.stage_steps("head")} == {"Adam"}
    assert {s.optimizer for s in seen.stage_steps("fine-tune")} == {"RMSprop"}


@wires("FinetuneConfig.weight_decay")
def test_weight_decay_reaches_the_weights_groups_not_the_norms_and_biases(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", weight_decay=0.01)
    for step in seen.steps:
        for group in step.groups:
            matrices = all(len(shape) > 1 for shape in group["shapes"])
            assert group["weight_decay"] == (0.01 if matrices else 0.0), group["name"]
        assert any(g["weight_decay"] == 0.01 for g in step.groups)


@wires("FinetuneConfig.schedule")
def test_schedule_sets_the_rate_of_every_step(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="none", lr=0.1, epochs=2, schedule="cosine")
    head = [rates(s)["head"] for s in seen.steps]
    total = len(head)
    assert total == 6
    assert head == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / total)) for k in range(total)])
    _, seen = run(rec, data, tmp_path / "b", freeze="none", lr=0.1, epochs=2, schedule="one-cycle")
    head = [rates(s)["head"] for s in seen.steps]
    assert head[0] < max(head) and head[-1] < max(head) and max(head) == pytest.approx(0.1, rel=0.05)


@wires("FinetuneConfig.warmup_epochs")
def test_warmup_epochs_ramp_the_rate_up_over_the_first_epochs_steps(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", lr=0.3, epochs=2, warmup_epochs=1)
    head = [rates(s)["head"] for s in seen.steps]
    assert head == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3, 0.3])


# -- what trains: freezing, BatchNorm, the head --------------------------------------------------------------------

@wires("FinetuneConfig.freeze")
def test_freeze_decides_which_units_the_optimizer_holds(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="all")
    assert {tuple(rates(s)) for s in seen.steps} == {("head",)}
    _, seen = run(rec, data, tmp_path / "b", freeze="top:2")
    assert {tuple(sorted(rates(s))) for s in seen.steps} == {("head", "unit 4", "unit 5")}
    _, seen = run(rec, data, tmp_path / "c", freeze="two-stage")
    assert [e.stage for e in seen.epochs] == ["head", "fine-tune"]
    assert len(unit_rates(seen.stage_steps("fine-tune")[0])) == 6


@wires("FinetuneConfig.train_bn")
@pytest.mark.parametrize("train_bn", [True, False])
def test_train_bn_decides_whether_batchnorm_layers_update_during_the_steps(rec, data, tmp_path, train_bn):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", train_bn=train_bn)
    modes = {mode for s in seen.steps for mode in s.bn_training}
    assert modes == {train_bn}
    _, seen = run(rec, data, tmp_path / "n", freeze="two-stage", train_bn=train_bn)  # stage 2's default: frozen
    assert {mode for s in seen.stage_steps("fine-tune") for mode in s.bn_training} == {train_bn}


def head_shapes(step) -> list[tuple]:
    return [shape for g in step.groups if g["name"] == "head" for shape in g["shapes"]]


@wires("FinetuneConfig.head")
def test_head_is_the_module_the_optimizer_trains(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="all")
    (weight,), (bias,) = ([s for s in head_shapes(seen.steps[0]) if len(s) == n] for n in (2, 1))
    assert weight[0] == 3 and bias == (3,)
    _, seen = run(rec, data, tmp_path / "b", freeze="all", head="mlp:16")
    shapes = head_shapes(seen.steps[0])
    assert (16,) in shapes and (3, 16) in shapes and (3,) in shapes
    assert seen.steps[0].logits.shape[1] == 3


@wires("FinetuneConfig.dropout")
def test_dropout_is_the_trained_heads(rec, data, tmp_path):
    for p in (0.5, 0.0):
        _, seen = run(rec, data, tmp_path / f"m{p}", freeze="all", head="mlp:16", dropout=p)
        model = seen.steps[0].model
        assert [m.p for m in model.classifier.modules() if isinstance(m, nn.Dropout)] == [p]


@wires("FinetuneConfig.pooling")
def test_pooling_decides_what_the_head_is_given(rec, data, tmp_path):
    dims = {}
    for pooling in ("avg", "flatten"):
        result, seen = run(rec, data, tmp_path / pooling, freeze="all", image_size=64, pooling=pooling)
        weight = next(s for s in head_shapes(seen.steps[0]) if len(s) == 2)
        dims[pooling] = weight[1]
        assert weight[1] == result.feature_dim
    assert dims["flatten"] > dims["avg"]


# -- the loss: targets, mixing, smoothing, weights ---------------------------------------------------------------

def lam_of(step) -> float | None:
    """Mixup's / CutMix's weight of each image itself, from the targets (a row whose label differs from its
    partner's in the flipped batch); None when every row is paired with its own class."""
    labels, targets = step.labels, step.targets
    for i, (a, b) in enumerate(zip(labels, labels.flip(0))):
        if a != b:
            return float(targets[i, a])
    return None


@wires("FinetuneConfig.mixup")
def test_mixup_mixes_the_images_the_model_sees_as_it_mixes_their_targets(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", mixup=1.0, epochs=2)
    checked = 0
    for step in seen.steps:
        assert step.raw is not None and step.targets.shape == (len(step.raw), 3)
        lam = lam_of(step)
        if lam is None or abs(lam - 1) < 1e-3:
            continue
        expected = lam * step.raw + (1 - lam) * step.raw.flip(0)
        torch.testing.assert_close(step.inputs, expected, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(step.inputs, step.raw, atol=1e-3)
        checked += 1
    assert checked >= 3


@wires("FinetuneConfig.cutmix")
def test_cutmix_pastes_a_box_of_the_partner_image_the_size_the_targets_say(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "m", freeze="none", cutmix=1.0, epochs=2)
    checked = 0
    for step in seen.steps:
        lam = lam_of(step)
        if lam is None or lam > 0.98:
            continue
        changed = (step.inputs != step.raw).any(dim=1)  # (batch, H, W)
        box = changed.any(dim=0)
        partner = step.raw.flip(0)
        assert torch.equal(step.inputs[:, :, box], partner[:, :, box])
        assert torch.equal(step.inputs[:, :, ~box], step.raw[:, :, ~box])
        assert float(box.float().mean()) == pytest.approx(1 - lam, abs=0.02)
        checked += 1
    assert checked >= 2


@wires("FinetuneConfig.label_smoothing")
def test_label_smoothing_reaches_the_loss_with_and_without_mixup(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="none", label_smoothing=0.1)
    for step in seen.steps:
        expected = F.cross_entropy(step.logits.float(), step.targets, label_smoothing=0.1)
        assert step.loss == pytest.approx(float(expected), rel=1e-5)
        assert abs(step.loss - float(F.cross_entropy(step.logits.float(), step.targets))) > 1e-4
    _, seen = run(rec, data, tmp_path / "b", freeze="none", label_smoothing=0.1, mixup=1.0, batch_size=6)
    for step in seen.steps:  # batches of 6 and 6: mixed; every class keeps at least the smoothing's share
        assert step.targets.sum(1) == pytest.approx(torch.ones(len(step.targets)))
        assert float(step.targets.min()) == pytest.approx(0.1 / 3, abs=1e-6)
    _, seen = run(rec, data, tmp_path / "c", freeze="none", label_smoothing=0.1, mixup=1.0, batch_size=5)
    odd = [s for s in seen.steps if len(s.targets) % 2]  # an odd batch is not mixed but still smoothed
    assert odd and all(float(s.targets.min()) == pytest.approx(0.1 / 3, abs=1e-6) for s in odd)


@wires("FinetuneConfig.class_weights")
def test_class_weights_weigh_the_loss_by_inverse_class_frequency(rec, tmp_path):
    data = small_folder(tmp_path / "uneven", {"a": 12, "b": 4, "c": 4})
    _, seen = run(rec, data, tmp_path / "m", freeze="none", class_weights=True)
    labels = torch.cat([s.targets for s in seen.steps])
    counts = torch.bincount(labels, minlength=3).float()
    weights = len(labels) / (3 * counts)
    differs = 0
    for step in seen.steps:
        expected = F.cross_entropy(step.logits.float(), step.targets, weight=weights)
        assert step.loss == pytest.approx(float(expected), rel=1e-5)
        differs += abs(step.loss - float(F.cross_entropy(step.logits.float(), step.targets))) > 1e-4
    assert differs >= 1


# -- the images: augmentation, validation, size, memory format -----------------------------------------------------

@wires("FinetuneConfig.augment")
def test_augment_changes_the_training_images_the_steps_see(rec, data, tmp_path):
    _, plain = run(rec, data, tmp_path / "a", freeze="none", epochs=2)
    _, augmented = run(rec, data, tmp_path / "b", freeze="none", epochs=2, augment=["flip", "crop"])
    assert [s.targets.tolist() for s in plain.steps] == [s.targets.tolist() for s in augmented.steps]
    changed = sum(not torch.allclose(a.inputs, b.inputs) for a, b in zip(plain.steps, augmented.steps))
    assert changed == len(plain.steps)


def affine(seen):
    """The random affine step of the training source's transform (rotate / zoom)."""
    from torchvision.transforms import v2

    transform = seen.epochs[0].train.transform
    found = [t for t in transform.steps.transforms if isinstance(t, v2.RandomAffine)]
    assert len(found) == 1
    return found[0]


@wires("FinetuneConfig.rotation")
def test_rotation_is_the_largest_angle_the_training_images_turn(rec, data, tmp_path):
    for degrees in (5.0, 90.0):
        _, seen = run(rec, data, tmp_path / f"r{degrees}", freeze="none", augment=["rotate"], rotation=degrees)
        assert list(affine(seen).degrees) == [-degrees, degrees]
        assert affine(seen).scale is None


@wires("FinetuneConfig.zoom")
def test_zoom_is_the_largest_scaling_of_the_training_images(rec, data, tmp_path):
    for zoom in (0.1, 0.5):
        _, seen = run(rec, data, tmp_path / f"z{zoom}", freeze="none", augment=["zoom"], zoom=zoom)
        assert tuple(affine(seen).scale) == pytest.approx((1 - zoom, 1 + zoom))
        assert list(affine(seen).degrees) == [0.0, 0.0]


@wires("FinetuneConfig.augment")
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_validation_images_are_never_augmented(rec, data, tmp_path, prefix_cache):
    """Validation sees the same images every epoch, with or without training augmentation."""
    options = dict(freeze="none", epochs=2, prefix_cache=prefix_cache)
    _, plain = run(rec, data, tmp_path / "a", **options)
    _, augmented = run(rec, data, tmp_path / "b", augment=["flip", "crop", "rotate", "zoom", "trivialaugment"],
                       **options)
    assert len(plain.evaluations) == len(augmented.evaluations) == 2
    reference = [digest(x) for x in plain.evaluations[0].inputs]
    for evaluation in plain.evaluations + augmented.evaluations:
        assert evaluation.start == 0
        assert [digest(x) for x in evaluation.inputs] == reference


@wires("FinetuneConfig.image_size", "FinetuneConfig.backbone")
def test_image_size_and_backbone_are_what_the_steps_run(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="none", image_size=48)
    assert {tuple(s.inputs.shape[1:]) for s in seen.steps} == {(3, 48, 48)}
    assert {type(s.model.net).__name__ for s in seen.steps} == {"EfficientNet"}
    _, seen = run(rec, data, tmp_path / "b", freeze="none", image_size=40, backbone="test_resnet")
    assert {tuple(s.inputs.shape[1:]) for s in seen.steps} == {(3, 40, 40)}
    assert {type(s.model.net).__name__ for s in seen.steps} == {"ResNet"}


def test_image_batches_reach_the_model_channels_last_on_the_cpu(rec, data, tmp_path):
    result, seen = run(rec, data, tmp_path / "m", freeze="none", device="cpu", prefix_cache=False)
    assert result.runtime["channels_last"] is True
    for x in [s.inputs for s in seen.steps] + [x for e in seen.evaluations for x in e.inputs]:
        assert x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last)
        assert not x.is_contiguous()
    stem = seen.steps[0].model.net.conv_stem.weight
    assert stem.is_contiguous(memory_format=torch.channels_last)


# -- data selection -------------------------------------------------------------------------------------------------

def labels_seen(seen) -> list[int]:
    return [int(y) for s in seen.stage_steps(seen.epochs[0].stage) if s.epoch == 0 for y in s.targets]


@wires("FinetuneConfig.data", "FinetuneConfig.num_classes", "FinetuneConfig.classes")
def test_data_classes_and_num_classes_decide_the_targets(rec, data, tmp_path):
    other = small_folder(tmp_path / "other", {"p": 5, "q": 5})
    result, seen = run(rec, other, tmp_path / "a", freeze="none")
    assert result.classes == ["p", "q"] and seen.steps[0].logits.shape[1] == 2
    assert sorted(set(labels_seen(seen))) == [0, 1]
    result, seen = run(rec, data, tmp_path / "b", freeze="none", classes=["a", "c"])
    assert result.classes == ["a", "c"] and seen.steps[0].logits.shape[1] == 2
    assert len(labels_seen(seen)) == result.train_images == 8
    result, seen = run(rec, data, tmp_path / "c", freeze="none", num_classes=2)
    assert result.classes == ["a", "b"] and seen.steps[0].logits.shape[1] == 2


@wires("FinetuneConfig.per_class", "FinetuneConfig.ratios", "FinetuneConfig.val_per_class",
       "FinetuneConfig.test_per_class")
def test_split_sizes_decide_how_many_images_train_validate_and_test(rec, data, tmp_path):
    result, seen = run(rec, data, tmp_path / "a", freeze="none", per_class=2)
    assert len(labels_seen(seen)) == 6 and sorted(labels_seen(seen)) == [0, 0, 1, 1, 2, 2]
    result, seen = run(rec, data, tmp_path / "b", freeze="none", ratios=(0.5, 0.25, 0.25), image_size=64)
    assert len(labels_seen(seen)) == result.train_images == 9
    assert sum(len(x) for x in seen.evaluations[0].inputs) == result.val_images
    assert result.val_images + result.test_images == 9
    result, seen = run(rec, data, tmp_path / "c", freeze="none", val_per_class=2, test_per_class=1, image_size=64)
    assert sum(len(x) for x in seen.evaluations[0].inputs) == result.val_images == 6
    assert result.test_images == 3
    assert len(labels_seen(seen)) == 18 - 6 - 3


@wires("FinetuneConfig.folds", "FinetuneConfig.fold")
def test_folds_and_fold_choose_the_images_held_out(rec, data, tmp_path):
    seen_train = {}
    for folds, fold in ((3, 0), (3, 1), (2, 0)):
        result, seen = run(rec, data, tmp_path / f"f{folds}{fold}", freeze="none", folds=folds, fold=fold,
                           image_size=64)
        assert result.test_images == 18 // folds
        assert len(labels_seen(seen)) + result.val_images == 18 - 18 // folds
        seen_train[folds, fold] = sorted(digest(x) for s in seen.steps if s.epoch == 0 for x in s.inputs)
    assert seen_train[3, 0] != seen_train[3, 1]


@wires("FinetuneConfig.seed")
def test_seed_decides_the_order_of_the_training_images(rec, tmp_path):
    data = split_folder(tmp_path / "split")  # given splits: the seed changes the order only, not the images

    def order(seed, name):
        _, seen = run(rec, data, tmp_path / name, freeze="none", seed=seed)
        return [digest(x) for s in seen.steps for x in s.inputs]

    zero, again, one = order(0, "a"), order(0, "b"), order(1, "c")
    assert zero == again
    assert sorted(zero) == sorted(one) and zero != one


@wires("FinetuneConfig.weights", "FinetuneConfig.random_init")
def test_weights_and_random_init_decide_the_backbone_the_steps_start_from(rec, data, tmp_path):
    import timm

    from transferlab.backbones import load_backbone

    torch.manual_seed(123)
    saved = timm.create_model("test_efficientnet").state_dict()
    path = tmp_path / "weights.pt"
    torch.save(saved, path)
    options = dict(freeze="all", random_init=False)
    _, seen = run(rec, data, tmp_path / "a", weights=str(path), **options)
    torch.testing.assert_close(seen.steps[0].model.net.conv_stem.weight, saved["conv_stem.weight"])
    pretrained = load_backbone("efficientnet_lite0").model.conv_stem.weight
    lite = dict(options, backbone="efficientnet_lite0")
    _, seen = run(rec, data, tmp_path / "b", **lite)
    torch.testing.assert_close(seen.steps[0].model.net.conv_stem.weight, pretrained)
    _, seen = run(rec, data, tmp_path / "c", **{**lite, "random_init": True})
    assert not torch.allclose(seen.steps[0].model.net.conv_stem.weight, pretrained)


# -- how long it trains: epochs, stopping, resuming --------------------------------------------------------------

@wires("FinetuneConfig.epochs", "FinetuneConfig.stage2_epochs")
def test_epochs_and_stage2_epochs_are_the_epochs_the_loop_trains(rec, data, tmp_path):
    result, seen = run(rec, data, tmp_path / "a", freeze="none", epochs=3)
    assert [e.stage for e in seen.epochs] == ["train"] * 3 and len(seen.evaluations) == 3
    result, seen = run(rec, data, tmp_path / "b", freeze="two-stage", epochs=1, stage2_epochs=2)
    assert [e.stage for e in seen.epochs] == ["head", "fine-tune", "fine-tune"]
    assert result.epochs_run == 3


@wires("FinetuneConfig.early_stopping", "FinetuneConfig.patience")
def test_early_stopping_and_patience_are_what_the_loop_stops_on(rec, data, tmp_path):
    from transferlab.engine.callbacks import EarlyStopping

    _, seen = run(rec, data, tmp_path / "a", freeze="none", early_stopping="val_accuracy", patience=3)
    stoppers = [c for c in seen.epochs[0].callbacks if isinstance(c, EarlyStopping)]
    assert [(s.monitor, s.patience) for s in stoppers] == [("val_accuracy", 3)]
    _, seen = run(rec, data, tmp_path / "b", freeze="none", early_stopping="val_loss", patience=1, epochs=4,
                  lr=1e-9, train_bn=False)
    stopper, = [c for c in seen.epochs[0].callbacks if isinstance(c, EarlyStopping)]
    assert (stopper.monitor, stopper.patience) == ("val_loss", 1)
    assert len(seen.epochs) < 4, "a rate of 1e-9 cannot improve the validation loss: stopped after patience 1"


@wires("FinetuneConfig.output")
def test_output_is_where_the_loop_checkpoints_and_the_model_is_saved(rec, data, tmp_path):
    from transferlab.engine.callbacks import Checkpoint

    result, seen = run(rec, data, tmp_path / "here", freeze="none")
    checkpoints = [c for c in seen.epochs[0].callbacks if isinstance(c, Checkpoint)]
    assert [c.folder for c in checkpoints] == [tmp_path / "here"]
    assert Path(result.model_path) == tmp_path / "here" and any((tmp_path / "here").iterdir())


@wires("FinetuneConfig.resume")
def test_resume_continues_the_loop_after_the_last_completed_epoch(rec, data, tmp_path, monkeypatch):
    from transferlab.engine import loop

    recording = loop._train_epoch
    calls = []

    def power_cut(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return recording(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        run(rec, data, tmp_path / "m", freeze="none", epochs=3)
    monkeypatch.setattr(loop, "_train_epoch", recording)
    with pytest.raises(UserError, match="--resume"):
        run(rec, data, tmp_path / "m", freeze="none", epochs=3)
    result, seen = run(rec, data, tmp_path / "m", freeze="none", epochs=3, resume=True)
    assert [s.epoch for s in seen.steps] == [1, 1, 1, 2, 2, 2]
    assert result.epochs_run == 3


@wires("FinetuneConfig.prefix_cache")
def test_prefix_cache_feeds_the_steps_the_frozen_layers_outputs(rec, data, tmp_path):
    _, cached = run(rec, data, tmp_path / "a", freeze="top:1")
    _, plain = run(rec, data, tmp_path / "b", freeze="top:1", prefix_cache=False)
    assert {s.start for s in cached.steps} == {cached.steps[0].model.cacheable_steps()} != {0}
    assert {s.start for s in plain.steps} == {0}
    assert {tuple(s.inputs.shape[1:]) for s in plain.steps} == {(3, 32, 32)}
    assert all(s.inputs.shape[1] != 3 for s in cached.steps)
    assert [s.targets.tolist() for s in cached.steps] == [s.targets.tolist() for s in plain.steps]


# -- where and how it runs ------------------------------------------------------------------------------------------

@wires("FinetuneConfig.batch_size")
def test_batch_size_is_the_steps_batch(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="none", batch_size=6)
    assert [len(s.inputs) for s in seen.steps] == [6, 6]
    _, seen = run(rec, data, tmp_path / "b", freeze="none", batch_size=5)
    assert [len(s.inputs) for s in seen.steps] == [5, 5, 2]


@wires("FinetuneConfig.precision")
def test_precision_is_the_autocast_of_the_steps(rec, data, tmp_path):
    _, seen = run(rec, data, tmp_path / "a", freeze="none", precision="bf16")
    assert {s.logits.dtype for s in seen.steps} == {torch.bfloat16}
    _, seen = run(rec, data, tmp_path / "b", freeze="none", precision="fp32")
    assert {s.logits.dtype for s in seen.steps} == {torch.float32}


@wires("FinetuneConfig.device")
def test_device_is_where_the_steps_run(rec, data, tmp_path):
    result, seen = run(rec, data, tmp_path / "a", freeze="none", device="cpu")
    assert result.runtime["device"] == "cpu" and {s.inputs.device.type for s in seen.steps} == {"cpu"}
    if torch.cuda.is_available():
        result, seen = run(rec, data, tmp_path / "b", freeze="none", device="cuda")
        assert {s.inputs.device.type for s in seen.steps} == {"cuda"}
    else:
        with pytest.raises(UserError, match="--device cuda"):
            run(rec, data, tmp_path / "b", freeze="none", device="cuda")


@wires("FinetuneConfig.compile")
def test_compile_hands_the_loop_a_compiled_forward(rec, data, tmp_path, monkeypatch):
    """torch.compile itself is recorded, not run (it takes seconds to minutes); the run goes on eagerly."""
    compiled = []

    def record_compile(fn, *args, **kwargs):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", record_compile)
    result, _ = run(rec, data, tmp_path / "a", freeze="none")
    assert compiled == [] and result.runtime["compile"] is False
    result, seen = run(rec, data, tmp_path / "b", freeze="none", compile=True)
    assert result.runtime["compile"] is True
    assert any(e.forward is fn for e in seen.epochs for fn in compiled), "the training forward was compiled"


@wires("FinetuneConfig.num_workers")
def test_num_workers_are_the_loaders_workers(rec, data, tmp_path, monkeypatch):
    from torch.utils.data import DataLoader

    workers = []
    real_init = DataLoader.__init__

    def init(self, *args, **kwargs):
        workers.append(kwargs.get("num_workers", 0))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "__init__", init)
    _, seen = run(rec, data, tmp_path / "a", freeze="none", prefix_cache=False, num_workers=1)
    assert workers.count(1) >= 3, "training, validation and test images"  # (inference timing: one batch, here)
    assert seen.epochs[0].train.num_workers == 1
    workers.clear()
    run(rec, data, tmp_path / "b", freeze="none", prefix_cache=False, num_workers=0)
    assert workers and set(workers) == {0}


@wires("FinetuneConfig.log", "FinetuneConfig.log_dir", "FinetuneConfig.log_experiment", "FinetuneConfig.log_run")
def test_log_options_write_the_loops_epochs_where_they_say(rec, data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = run(rec, data, tmp_path / "m", freeze="none", epochs=2, log=["tensorboard"],
                    log_dir=str(tmp_path / "tb"), log_experiment="exp", log_run="first")
    folder = tmp_path / "tb" / "exp" / "first"
    assert list(folder.glob("events.*"))
    events = EventAccumulator(str(folder))
    events.Reload()
    losses = [e.value for e in events.Scalars("train_loss")]
    assert losses == pytest.approx([h["train_loss"] for h in result.history], rel=1e-6)
