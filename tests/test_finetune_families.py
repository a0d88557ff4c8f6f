"""Fine-tuning on every timm family, and saved models that plain timm loads.

Random weights, a few tiny images per class: this specifies plumbing (which parameters
train, what a bundle holds), not accuracy.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from transferlab.backbones import load_backbone
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.model import TransferModel
from transferlab.finetune.run import FinetuneRun

FAMILIES = ["test_vit", "test_convnext", "test_efficientnet", "test_resnet", "test_byobnet", "mobilenetv3_small_050"]


def config(data, output, backbone, **overrides) -> FinetuneConfig:
    settings = {"data": str(data), "output": str(output), "backbone": backbone, "random_init": True,
                "batch_size": 4, "num_workers": 0, "per_class": 4, "epochs": 1, "early_stopping": "none",
                "lr": 1e-2, **overrides}
    return FinetuneConfig(**settings)


def trained_parameters(cfg) -> tuple[FinetuneRun, set[str]]:
    """The run, and the names of the timm model's parameters that one epoch changed."""
    run = FinetuneRun(cfg)
    run.prepare()
    before = {n: p.detach().clone() for n, p in run.model.net.named_parameters()}
    run.run()
    after = dict(run.model.net.named_parameters())
    return run, {n for n in before if not torch.equal(before[n], after[n].detach())}


@pytest.mark.parametrize("backbone", FAMILIES)
@pytest.mark.parametrize("freeze", ["all", "half", "top:1", "two-stage"])
def test_exactly_the_unfrozen_units_and_the_head_train(class_folders, tmp_path, backbone, freeze):
    run, changed = trained_parameters(config(class_folders, tmp_path / "m", backbone, freeze=freeze))
    frozen = run.stages[-1].frozen_units
    frozen_names = {n for unit in run.model.units[:frozen] for n in unit.parameter_names}
    head = {n for n, _ in run.model.head_parameters()}
    assert head <= changed
    assert not changed & frozen_names
    trainable_units = run.model.units[frozen:]
    assert all(set(u.parameter_names) & changed for u in trainable_units), "every unfrozen unit should learn"


@pytest.mark.parametrize("backbone", FAMILIES)
def test_a_bundle_loads_into_plain_timm_and_predicts_the_same(class_folders, tmp_path, backbone):
    result = run_finetune(config(class_folders, tmp_path / "m", backbone, freeze="top:1"))
    net = timm.create_model(backbone, num_classes=len(result.classes))
    net.load_state_dict(load_file(str(tmp_path / "m" / "model.safetensors")))
    bundle = load_bundle(tmp_path / "m")
    x = torch.randn(2, *bundle.meta["preprocessing"]["input_size"], generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), bundle.model(x), rtol=1e-4, atol=1e-5)
    hub = json.loads((tmp_path / "m" / "config.json").read_text())
    assert hub["architecture"] == backbone and hub["num_classes"] == 3
    assert hub["label_names"] == ["a", "b", "c"]


def test_timm_finds_architecture_weights_and_preprocessing_in_the_bundle_folder(class_folders, tmp_path):
    run_finetune(config(class_folders, tmp_path / "m", "test_efficientnet", freeze="all"))
    net = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True)
    bundle = load_bundle(tmp_path / "m")
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), bundle.model(x), rtol=1e-4, atol=1e-5)
    assert tuple(timm.data.resolve_data_config(model=net)["mean"]) == tuple(bundle.meta["preprocessing"]["mean"])


def test_an_mlp_head_bundle_reloads_through_transferlab(class_folders, tmp_path):
    result = run_finetune(config(class_folders, tmp_path / "m", "test_resnet", freeze="all", head="mlp:16"))
    bundle = load_bundle(tmp_path / "m")
    from transferlab.finetune.use import evaluate_folder

    evaluated = evaluate_folder(bundle, class_folders)
    assert bundle.classes == result.classes and evaluated["images"] == 60


@pytest.mark.parametrize("name, dim", [("vgg11", 4096), ("mobilenetv3_small_050", 1024)])
def test_fine_tuning_trains_on_the_probes_features(name, dim):
    """``--freeze all`` is the linear probe: the head's input is the probe's pre-logits features."""
    backbone = load_backbone(name, random_init=True)
    model = TransferModel.from_backbone(backbone, num_classes=3)
    assert model.feature_dim == backbone.feature_dim == model.classifier.in_features == dim
