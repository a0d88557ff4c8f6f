"""``head_init: probe`` (stage 1 of two-stage as the probe's logistic regression) and the stage boundary
early stopping keeps (``EarlyStopping.start_from``): through the real ``finetune`` call.

The backbone is timm's tiny ``test_efficientnet`` loaded from a weights file, so it counts as pretrained and
two-stage applies; the three classes differ in colour, so the probe separates them perfectly.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from transferlab.engine.learner import Learner
from transferlab.engine.inputs import TensorInputs
from transferlab.engine.runtime import Runtime
from transferlab.finetune.head_init import fit_probe_head, head_inputs
from transferlab.finetune.run import finetune, restored_epoch
from transferlab.heads.sklearn_heads import logreg_head
from helpers import make_class_folders
from wiring import wires


@pytest.fixture
def fitted_stages(monkeypatch):
    """The stage names that went through the engine's ``fit`` (a probe-fitted stage does not)."""
    seen: list[str] = []
    real_fit = Learner.fit

    def spy(learner, epochs, stage, *args):
        seen.append(stage.name)
        return real_fit(learner, epochs, stage, *args)

    monkeypatch.setattr(Learner, "fit", spy)
    return seen


def tuned(data, output, weights, **options):
    return finetune(data, backbone="test_efficientnet", weights=weights, batch_size=8, num_workers=0,
                    output=str(output), patience=3, epochs=2, stage2_epochs=2, progress=False, **options)


class Identity(nn.Module):
    """A 'network' whose head input is its input: the head's logits are checked against the regression's."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.classifier = nn.Linear(dim, classes)

    def forward(self, x, start=0):
        return self.classifier(x)


@pytest.mark.parametrize("classes", [2, 4])
def test_the_head_computes_the_probes_logits(classes):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 12)) * rng.uniform(0.1, 5, size=12) + rng.normal(size=12)
    y = np.arange(60) % classes
    X[y == 1, 3] += 2.0
    model = Identity(12, classes)
    inputs = TensorInputs(torch.tensor(X, dtype=torch.float32), torch.tensor(y))
    fit_probe_head(model.classifier, *head_inputs(model, model.classifier, inputs, Runtime(), batch_size=16), seed=0)

    expected = logreg_head(seed=0).fit(X, y).decision_function(X)
    logits = model(torch.tensor(X, dtype=torch.float32)).detach().numpy().astype(np.float64)
    if classes == 2:  # one score: the second class's logit minus the first's
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0], expected, rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


@wires("FinetuneConfig.head_init")
@pytest.mark.parametrize("head_init", ["probe", "sgd"])
def test_head_init_decides_how_stage_one_trains(class_folders, tmp_path, weights, fitted_stages, head_init):
    result = tuned(class_folders, tmp_path / head_init, weights, head_init=head_init, freeze="two-stage",
                   early_stopping="val_loss")

    head = [h for h in result.history if h["stage"] == "head"]
    if head_init == "probe":
        assert fitted_stages == ["fine-tune"]  # (validation accuracy 1.0 but early stopping on the loss: it runs)
        assert len(head) == 1 and head[0]["head_fit"] == "logreg" and head[0]["val_accuracy"] == 1.0
    else:
        assert fitted_stages == ["head", "fine-tune"]
        assert len(head) == 2 and "head_fit" not in head[0]
    assert result.stage2_start_epoch == len(head) + 1


def test_stage_two_keeps_stage_ones_weights_unless_it_does_better(tmp_path, weights):
    """Classes a and d share a colour, so the probe's head is right on about 3 of 4 validation images, and stage
    2 at a rate far too high does no better: the saved model is stage 1's, its backbone the pretrained one
    although stage 2 moved it."""
    data = make_class_folders(tmp_path / "data", {"a": 20, "b": 20, "c": 20, "d": 20})
    result = tuned(data, tmp_path / "m", weights, head_init="probe", freeze="two-stage",
                   stage2_lr=0.05, early_stopping="val_accuracy")

    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    pretrained = load_file(weights)
    stem = "conv_stem.weight"
    assert torch.equal(saved[stem], pretrained[stem])
    assert result.stage2_start_epoch == 2 and len(result.history) == 3  # stage 2 ran
    assert result.history[0]["val_accuracy"] < 1 and result.best_epoch == 1


def test_a_stage_that_cannot_beat_a_perfect_validation_score_is_skipped(class_folders, tmp_path, weights,
                                                                        fitted_stages):
    """The probe separates the colours (validation accuracy 1.0): stopping on validation accuracy would keep it
    whatever stage 2 did, so stage 2 does not run, and the result says so."""
    result = tuned(class_folders, tmp_path / "m", weights, head_init="probe", freeze="two-stage",
                   early_stopping="val_accuracy")

    assert fitted_stages == [] and [h["stage"] for h in result.history] == ["head"]
    assert result.stage2_start_epoch is None and result.frozen_layers == result.backbone_layers
    assert any("fine-tune stage was skipped" in note for note in result.notes)


def test_the_restored_epoch_may_be_the_stage_before():
    history = [{"epoch": 1, "stage": "head", "val_accuracy": 0.9, "val_loss": 0.3},
               {"epoch": 2, "stage": "fine-tune", "val_accuracy": 0.9, "val_loss": 0.2},
               {"epoch": 3, "stage": "fine-tune", "val_accuracy": 0.8, "val_loss": 0.4}]
    assert restored_epoch(history, "val_accuracy") == 1  # a tie keeps the earlier weights
    assert restored_epoch(history, "val_loss") == 2
    assert restored_epoch(history, "none") == 3


@pytest.fixture
def confusable(tmp_path):
    """train/ and test/ of four classes, a and d of one colour: the probe's head is right on about 3 of 4
    validation images, and stage 2 at a rate far too high does no better."""
    data = tmp_path / "data"
    make_class_folders(data / "train", {"a": 40, "b": 40, "c": 40, "d": 40})
    make_class_folders(data / "test", {"a": 12, "b": 12, "c": 12, "d": 12}, seed=7)
    return data


def predictions(result) -> dict[str, str]:
    return {p["path"]: p["predicted"] for p in result["predictions"]}


def test_a_fine_tune_that_ends_at_the_probes_head_is_the_probe(confusable, tmp_path, weights, cli):
    """Validation carved out of train/ (which the probe trains on whole), and stage 2 does not beat stage 1 on it:
    the head is fitted again on every training image, so the fine-tune predicts every test image as the probe does
    (with the head of the carved training images alone, it would not)."""
    common = ("--data", str(confusable), "--backbone", "test_efficientnet", "--weights", weights, "--batch-size",
              "8", "--workers", "0", "--precision", "fp32", "--json")
    probed = cli("probe", *common, "--head", "logreg", "--predictions", "--no-cache")
    tuned = cli("finetune", *common, "--output", str(tmp_path / "m"), "--freeze", "two-stage", "--head-init", "probe",
                "--stage2-lr", "0.05", "--epochs", "2", "--early-stopping", "val_accuracy", "--augment", "none")
    assert probed.returncode == 0 and tuned.returncode == 0, probed.stderr + tuned.stderr
    probe, result = json.loads(probed.stdout), json.loads(tuned.stdout)
    assert result["best_epoch"] == 1 and any("fitted again on the" in note for note in result["notes"])
    assert result["train_images"] + result["val_images"] == probe["train_images"] == 160
    assert predictions(result) == predictions(probe)


def test_a_run_resumed_after_stage_one_refits_the_probes_head_alike(confusable, tmp_path, weights):
    """Interrupted in stage 2, the resumed run no longer holds stage 1's features: it computes them again and ends
    with the same head as the uninterrupted run."""
    options = dict(head_init="probe", freeze="two-stage", stage2_lr=0.05, early_stopping="val_accuracy",
                   augment="none", precision="fp32")
    whole = tuned(confusable, tmp_path / "whole", weights, **options)

    def interrupt(record):
        if record["stage"] == "fine-tune":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tuned(confusable, tmp_path / "cut", weights, on_epoch=interrupt, **options)
    resumed = tuned(confusable, tmp_path / "cut", weights, resume=True, **options)
    assert resumed.best_epoch == whole.best_epoch == 1 and any("fitted again" in n for n in resumed.notes)
    assert predictions(asdict(resumed)) == predictions(asdict(whole))


def test_the_probes_fit_and_the_next_stage_share_one_pass_over_the_images(confusable, tmp_path, weights,
                                                                          monkeypatch):
    """--recipe fast: the top unit's cached input is computed once per split, before the probe's fit (which runs
    the top unit on it) and kept for stage 2; the run ends exactly as one that decodes every image every epoch."""
    import transferlab.finetune.run as run

    passes = []
    real = run.compute_prefix_outputs

    def counting(model, steps, paths, *args, **kwargs):
        passes.append((steps, len(paths)))
        return real(model, steps, paths, *args, **kwargs)

    monkeypatch.setattr(run, "compute_prefix_outputs", counting)
    options = dict(recipe="fast", stage2_lr=0.05, precision="fp32")
    cached = tuned(confusable, tmp_path / "cached", weights, **options)
    assert len(passes) == 2 and passes[0][0] == passes[1][0] > 0  # train and val, at stage 2's depth
    assert sum(n for _, n in passes) == cached.train_images + cached.val_images
    assert cached.stage2_start_epoch == 2 and len(cached.history) > 1  # stage 2 ran on them
    uncached = tuned(confusable, tmp_path / "uncached", weights, prefix_cache=False, **options)
    assert [h["val_accuracy"] for h in cached.history] == pytest.approx([h["val_accuracy"] for h in uncached.history])
    assert predictions(asdict(cached)) == predictions(asdict(uncached))
