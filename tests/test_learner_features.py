"""The run owner's parts, each through the real ``finetune`` / ``lr-find`` entry points: EMA of the weights,
gradient accumulation, class-balanced sampling and the learning-rate finder."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from wiring import FINETUNE, one_thread, small_folder, wires  # noqa: F401
from transferlab.engine import loop
from transferlab.engine.callbacks import EMA, EarlyStopping
from transferlab.engine.inputs import TensorInputs
from transferlab.engine.learner import Learner
from transferlab.engine.runtime import Runtime
from transferlab.errors import UserError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return small_folder(tmp_path_factory.mktemp("learner") / "data")


def finetune(data: Path, output: Path, **options):
    from transferlab.finetune.run import finetune as run

    return run(str(data), output=str(output), progress=False, **{**FINETUNE, "augment": [], **options})


@wires("FinetuneConfig.ema")
def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_saved(data, tmp_path, monkeypatch):
    from transferlab.finetune.bundle import load_bundle

    seen: dict = {}
    real_step = EMA.on_step_end

    def recording_step(self, state):
        real_step(self, state)
        seen["raw"] = copy.deepcopy(state.model.state_dict())
        seen["ema"] = copy.deepcopy(self.ema.module.state_dict())

    monkeypatch.setattr(EMA, "on_step_end", recording_step)
    result = finetune(data, tmp_path / "m", freeze="none", epochs=2, ema=0.5, lr=0.05)
    saved = load_bundle(result.model_path).model.state_dict()
    weights = [k for k, v in saved.items() if v.is_floating_point() and "running" not in k]
    assert weights and result.config["ema"] == 0.5
    assert any(not torch.allclose(seen["raw"][k], seen["ema"][k]) for k in weights), "EMA should differ from raw"
    for k in weights:
        torch.testing.assert_close(saved[k], seen["ema"][k])


def test_ema_is_what_validation_sees(data, tmp_path, monkeypatch):
    """Each epoch's validation runs on the averaged weights: with decay near 1 they barely move from the start."""
    evaluated = []
    real_evaluate = loop.evaluate

    def recording_evaluate(model, *args, **kwargs):
        evaluated.append(copy.deepcopy(model.state_dict()))
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", recording_evaluate)
    finetune(data, tmp_path / "start", freeze="none", epochs=1, lr=0.05, ema=0.999999)
    slow = evaluated.pop()
    finetune(data, tmp_path / "raw", freeze="none", epochs=1, lr=0.05)
    raw = evaluated.pop()
    from transferlab.finetune.run import FinetuneRun
    from transferlab.finetune.config import FinetuneConfig

    start = FinetuneRun(FinetuneConfig(data=str(data), **{**FINETUNE, "freeze": "none"}))
    start.prepare()
    initial = start.model.state_dict()
    key = next(k for k, v in initial.items() if v.is_floating_point() and "weight" in k and "running" not in k)
    assert torch.allclose(slow[key], initial[key], atol=1e-4) and not torch.allclose(raw[key], initial[key])


def first_step_gradients(data, output, monkeypatch, **options) -> dict[str, torch.Tensor]:
    """The gradients of the run's first optimizer step, as the optimizer saw them."""
    grads: list[dict] = []

    def record(self, state):
        grads.append({n: p.grad.detach().clone() for n, p in state.model.named_parameters() if p.grad is not None})

    monkeypatch.setattr(EarlyStopping, "on_step_end", record, raising=False)
    finetune(data, output, **options)
    monkeypatch.undo()
    return grads[0], len(grads)


@wires("FinetuneConfig.accumulate")
def test_accumulating_n_batches_gives_the_gradients_of_one_n_times_larger_batch(data, tmp_path, monkeypatch):
    # only the head trains (frozen units keep BatchNorm in eval mode): the gradient is a mean over the rows
    settings = {"freeze": "all", "epochs": 1, "dropout": 0.0}
    small, small_steps = first_step_gradients(data, tmp_path / "a", monkeypatch, batch_size=2, accumulate=3,
                                              **settings)
    large, large_steps = first_step_gradients(data, tmp_path / "b", monkeypatch, batch_size=6, **settings)
    single, _ = first_step_gradients(data, tmp_path / "c", monkeypatch, batch_size=2, **settings)
    assert small.keys() == large.keys() and small
    for name in large:
        torch.testing.assert_close(small[name], large[name], rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(single[n], large[n], rtol=1e-4, atol=1e-6) for n in large)
    assert small_steps == large_steps  # 12 training images: two steps of 6 either way


@wires("FinetuneConfig.sampler")
def test_balanced_sampling_draws_every_class_about_equally_often(tmp_path, monkeypatch):
    data = small_folder(tmp_path / "data", {"a": 24, "b": 4, "c": 4})
    drawn: list[np.ndarray] = []
    real_epoch = loop._train_epoch

    def recording_epoch(state, trained, forward, loss_fn, train, order, *args, **kwargs):
        drawn.append(np.bincount(train.labels[list(order)].numpy(), minlength=3))
        return real_epoch(state, trained, forward, loss_fn, train, order, *args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", recording_epoch)
    finetune(data, tmp_path / "shuffle", freeze="all", epochs=3)
    shuffled, drawn[:] = list(drawn), []
    finetune(data, tmp_path / "balanced", freeze="all", epochs=3, sampler="balanced")
    balanced = list(drawn)
    assert all((counts == shuffled[0]).all() for counts in shuffled)  # each image once an epoch
    minority = lambda counts: (counts[1] + counts[2]) / counts.sum()  # noqa: E731
    assert minority(sum(balanced)) > 1.5 * minority(shuffled[0])
    assert all(c.sum() == shuffled[0].sum() for c in balanced)  # as many draws as images
    assert not all((c == balanced[0]).all() for c in balanced)  # a new draw every epoch


def test_balanced_sampling_and_class_weights_are_refused_together(data, tmp_path):
    with pytest.raises(UserError, match="choose one"):
        finetune(data, tmp_path / "m", class_weights=True, sampler="balanced")


def test_the_new_options_come_from_the_command_line(data, tmp_path):
    from transferlab.cli.main import main

    args = ["finetune", "-d", str(data), "--ema", "0.9", "--accumulate", "2", "--sampler", "balanced",
            "--print-config"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "ema: 0.9" in out.output and "accumulate: 2" in out.output and "sampler: balanced" in out.output
    bad = CliRunner().invoke(main, ["finetune", "-d", str(data), "--accumulate", "0"])
    assert bad.exit_code != 0 and isinstance(bad.exception, (UserError, SystemExit))


def linear_learner() -> Learner:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 3
    x = torch.randn(96, 8, generator=generator) + nn.functional.one_hot(y, 8).float() * 3
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    return Learner(model, Runtime(), nn.CrossEntropyLoss(), lambda m, stage: torch.optim.SGD(m.parameters(), lr=0.1),
                   TensorInputs(x, y), batch_size=8)


def test_the_lr_sweep_rises_exponentially_restores_the_weights_and_suggests_a_rate_inside_it():
    learner = linear_learner()
    before = copy.deepcopy(learner.model.state_dict())
    sweep = learner.lr_find(start_lr=1e-5, end_lr=100.0, steps=60)
    ratios = np.diff(np.log(sweep.lrs))
    assert np.allclose(ratios, ratios[0]) and ratios[0] > 0 and sweep.lrs[0] == pytest.approx(1e-5)
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    assert sweep.suggestion is not None and 1e-4 < sweep.suggestion < 10
    assert min(sweep.losses) < sweep.losses[0] * 0.8  # the loss fell somewhere along the sweep


def test_lr_find_plots_and_suggests_a_rate_for_each_stage_of_two_stage(data, tmp_path):
    from transferlab.cli.main import main

    out = tmp_path / "sweep"
    args = ["lr-find", "-d", str(data), "-b", "test_efficientnet", "--random-init", "--image-size", "32",
            "--batch-size", "4", "--workers", "0", "--precision", "fp32", "--freeze", "two-stage", "--epochs", "1",
            "--steps", "12", "--head-init", "sgd", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("stage ")]
    assert [line.split(":")[0] for line in lines] == ["stage head", "stage fine-tune"]
    for path in (out / "lr-find-1-head.png", out / "lr-find-2-fine-tune.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = CliRunner().invoke(main, args)
    assert isinstance(again.exception, UserError) and "already exists" in str(again.exception)  # exit 2 in main


def test_a_resumed_ema_run_ends_like_an_uninterrupted_one(data, tmp_path):
    """The checkpoint holds the average and the raw weights: training goes on from the raw ones."""
    from transferlab.finetune.run import finetune as run

    settings = {**FINETUNE, "freeze": "none", "epochs": 3, "ema": 0.5, "lr": 0.05, "progress": False, "augment": []}
    whole = run(str(data), output=str(tmp_path / "whole"), **settings)

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(str(data), output=str(tmp_path / "cut"), on_epoch=interrupt, **settings)
    resumed = run(str(data), output=str(tmp_path / "cut"), resume=True, **settings)
    for a, b in zip(resumed.history, whole.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


@wires("FinetuneConfig.lr_find")
def test_lr_find_on_a_run_trains_each_stage_at_its_suggestion(data, tmp_path, monkeypatch):
    """Each stage trained by gradient is swept first, and the loop gets the suggestion as the head's rate with the
    top unit's scaled alike; the epochs record the rate trained at."""
    suggested, fitted = [], []
    real_find, real_fit = Learner.lr_find, Learner.fit

    def recording_find(self, stage, *args, **kwargs):
        sweep = real_find(self, stage, *args, **kwargs)
        suggested.append((stage.name, stage.head_lr, stage.backbone_lr, sweep.suggestion))
        return sweep

    def recording_fit(self, epochs, stage, *args):
        fitted.append((stage.name, stage.head_lr, stage.backbone_lr))
        return real_fit(self, epochs, stage, *args)

    monkeypatch.setattr(Learner, "lr_find", recording_find)
    monkeypatch.setattr(Learner, "fit", recording_fit)
    result = finetune(data, tmp_path / "m", freeze="two-stage", head_init="sgd", epochs=1, lr_find=True)
    assert [s[0] for s in suggested] == [f[0] for f in fitted] == ["head", "fine-tune"]
    for (_, head, top, found), (_, head_lr, top_lr) in zip(suggested, fitted):
        assert found is not None and head_lr == found != head
        assert top_lr == pytest.approx(top * found / head)
    assert [h["lr"] for h in result.history] == pytest.approx([f[1] for f in fitted])
    assert sum("lr-find: the" in note for note in result.notes) == 2


def test_a_studys_lr_auto_is_lr_find(tmp_path):
    from transferlab.study.spec import load_study

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndata: digits\nbackbones: [test_efficientnet]\nmethods:\n"
                    "  - {name: ft, kind: finetune, lr: auto}\n  - {name: plain, kind: finetune, lr: 0.01}\n")
    auto, plain = load_study(path).methods
    assert auto.options == {"lr_find": True} and plain.options == {"lr": 0.01}
