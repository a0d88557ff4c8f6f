"""Fine-tuning: freeze policies, frozen BatchNorm, the frozen-prefix cache, resume, bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferlab.errors import UserError
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.freeze import Stage, frozen_layers, plan_stages
from transferlab.finetune.model import TransferModel

TINY = {"backbone": "test_efficientnet", "random_init": True, "batch_size": 8}


def tiny_config(data, output, **overrides) -> FinetuneConfig:
    settings = {**TINY, "data": str(data), "output": str(output), "epochs": 2, "freeze": "half",
                "early_stopping": "none", "num_workers": 0, **overrides}
    return FinetuneConfig(**settings)


def test_freeze_policies_count_layers_from_the_input_side():
    assert frozen_layers("all", 20) == 20
    assert frozen_layers("none", 20) == 0
    assert frozen_layers("half", 20) == 10
    assert frozen_layers("first:7", 20) == 7
    assert frozen_layers("top:3", 20) == 17


def test_two_stage_trains_the_head_first_then_unfreezes():
    assert plan_stages("two-stage", 20) == [Stage(20, "head"), Stage(0, "fine-tune")]
    assert plan_stages("two-stage:top:5", 20) == [Stage(20, "head"), Stage(15, "fine-tune")]


@pytest.mark.parametrize("policy", ["bogus", "first:99", "top:-1", "first:x"])
def test_bad_freeze_policy_is_a_user_error(policy):
    with pytest.raises(UserError):
        plan_stages(policy, 20)


def test_frozen_layers_have_no_trainable_parameters(tiny):
    model = TransferModel.from_backbone(tiny, num_classes=3)
    model.freeze(len(model.layers))
    trainable, frozen = model.parameter_counts()
    assert trainable == sum(p.numel() for p in model.head.parameters())
    model.freeze(0)
    assert model.parameter_counts() == (trainable + frozen, 0)


def test_frozen_batchnorm_keeps_its_running_statistics(tiny, class_folders, tmp_path):
    """Trained without the prefix cache, so frozen layers really run inside model.train()."""
    config = tiny_config(class_folders, tmp_path / "run", prefix_cache=False, epochs=1, train_bn=True)
    from transferlab.finetune.run import FinetuneRun

    run = FinetuneRun(config, None, None)
    run.prepare()
    frozen = len(run.model.layers) // 2
    before = {k: v.clone() for k, v in run.model.state_dict().items() if "running_mean" in k}
    run.model.freeze(frozen)
    run.model.train()
    inputs = run.stage_inputs(Stage(frozen, "train"), run.train_samples, "train", training=True)
    optimizer = torch.optim.SGD([p for p in run.model.parameters() if p.requires_grad], lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    run.train_epoch(inputs, optimizer, schedule, seed=0, label="epoch")
    after = run.model.state_dict()
    frozen_names = [f"layers.{i}." for i in range(frozen)]
    changed_frozen = [k for k in before if any(k.startswith(p) for p in frozen_names) and not torch.equal(before[k], after[k])]
    changed_trainable = [k for k in before if not any(k.startswith(p) for p in frozen_names) and not torch.equal(before[k], after[k])]
    assert changed_frozen == []
    assert changed_trainable, "BatchNorm layers that train should update their statistics"


def test_prefix_cache_gives_the_same_training_as_recomputing(class_folders, tmp_path):
    cached = run_finetune(tiny_config(class_folders, tmp_path / "cached", prefix_cache=True))
    recomputed = run_finetune(tiny_config(class_folders, tmp_path / "recomputed", prefix_cache=False))
    assert cached.prefix_cache_used and cached.epochs_run == recomputed.epochs_run == 2
    for a, b in zip(cached.history, recomputed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    weights_a = load_bundle(tmp_path / "cached").model.state_dict()
    weights_b = load_bundle(tmp_path / "recomputed").model.state_dict()
    for name in weights_a:
        assert torch.allclose(weights_a[name].float(), weights_b[name].float(), atol=1e-4), name


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


def test_bundle_reloads_to_the_same_predictions(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "model", head="mlp:16", epochs=1))
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["model.safetensors", "transferlab.json"]
    bundle = load_bundle(tmp_path / "model")
    assert bundle.classes == result.classes == ["a", "b", "c"]
    from transferlab.finetune.use import evaluate_folder

    evaluated = evaluate_folder(bundle, class_folders)
    assert evaluated["images"] == 60
    assert sum(map(sum, evaluated["confusion_matrix"])) == 60


def test_result_counts_parameters_like_a_keras_summary(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "m", freeze="all", epochs=1))
    assert result.frozen_layers == result.backbone_layers
    assert result.trainable_parameters == result.feature_dim * 3 + 3  # the linear head only
    assert result.total_parameters == result.trainable_parameters + result.frozen_parameters


def test_small_cnn_trains_from_scratch_with_nothing_frozen(class_folders, tmp_path):
    result = run_finetune(FinetuneConfig(data=str(class_folders), backbone="small-cnn", epochs=3,
                                         output=str(tmp_path / "scratch"), num_workers=0))
    assert result.freeze == "none" and result.frozen_parameters == 0
    assert result.accuracy > 0.5  # three colours: easy even from scratch


def test_augmentation_decodes_images_every_epoch(class_folders, tmp_path):
    result = run_finetune(tiny_config(class_folders, tmp_path / "aug", augment=["flip", "rotate", "crop"], epochs=1))
    assert not result.prefix_cache_used
    with pytest.raises(UserError, match="augmentation"):
        run_finetune(tiny_config(class_folders, tmp_path / "bad", augment=["mixup"]))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_pytorch(class_folders, tmp_path, fmt):
    run_finetune(tiny_config(class_folders, tmp_path / "m", epochs=1))
    from transferlab.finetune.export import export_model

    exported = export_model(tmp_path / "m", fmt)
    assert exported["max_abs_difference"] < 1e-4
    assert (tmp_path / "m" / ("model.onnx" if fmt == "onnx" else "model.pt")).exists()


def test_pretrained_batchnorm_statistics_stay_fixed_by_default(tiny, class_folders, tmp_path):
    """With train_bn off, even trainable layers keep their BatchNorm statistics."""
    from transferlab.finetune.run import FinetuneRun

    run = FinetuneRun(tiny_config(class_folders, tmp_path / "run", prefix_cache=False, train_bn=False), None, None)
    run.prepare()
    before = {k: v.clone() for k, v in run.model.state_dict().items() if "running_" in k}
    run.model.freeze(0)
    inputs = run.stage_inputs(Stage(0, "train"), run.train_samples, "train", training=True)
    optimizer = torch.optim.SGD(run.model.parameters(), lr=0.1)
    run.train_epoch(inputs, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), seed=0, label="e")
    after = run.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_predict_classifies_new_images_and_reports_unreadable_ones(class_folders, tmp_path):
    run_finetune(tiny_config(class_folders, tmp_path / "m", epochs=1))
    new = tmp_path / "new"
    new.mkdir()
    (new / "broken.jpg").write_bytes(b"not an image")
    import shutil

    shutil.copy(class_folders / "a" / "a_000.png", new / "photo.png")
    from helpers import run_cli

    done = run_cli("predict", str(tmp_path / "m"), str(new), "--top-k", "2", "--json")
    assert done.returncode == 0, done.stderr
    import json

    results = {Path(r["image"]).name: r for r in json.loads(done.stdout)}
    assert results["broken.jpg"]["error"] == "unreadable image"
    top = results["photo.png"]["top"]
    assert len(top) == 2 and {t["label"] for t in top} <= {"a", "b", "c"}
    assert top[0]["probability"] >= top[1]["probability"]


def test_predict_with_a_missing_model_is_one_error_line(tmp_path):
    from helpers import run_cli

    done = run_cli("predict", str(tmp_path / "nothing"), str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1
