"""The engine: one runtime record chosen once, one fit/evaluate/predict loop, callbacks around the epochs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferlab.engine.callbacks import EarlyStopping
from transferlab.engine.inputs import TensorInputs
from transferlab.engine.learner import Learner
from transferlab.engine.loop import FitState, evaluate, predict
from transferlab.engine.runtime import Runtime, resolve_runtime
from transferlab.errors import UserError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def blobs(n=60, seed=0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 8, generator=generator) + nn.functional.one_hot(y, 8).float() * 4
    return TensorInputs(x, y)


def linear_fit(runtime=Runtime(), epochs=5, seed=0, callbacks=(), lr=0.1):
    torch.manual_seed(0)
    model = runtime.prepare(nn.Linear(8, 3))
    learner = Learner(model, runtime, nn.CrossEntropyLoss(), lambda m, stage: torch.optim.SGD(m.parameters(), lr=lr),
                      blobs(), blobs(seed=1), batch_size=16, seed=seed, callbacks=list(callbacks))
    return model, learner.fit(epochs)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_cpu_is_chosen_without_a_gpu_with_bf16_only_where_the_cpu_has_it(monkeypatch, native, expected):
    from transferlab.engine import runtime as module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(module, "native_bf16", lambda: native)
    runtime = resolve_runtime("auto", "auto")
    assert (runtime.device, runtime.precision, runtime.channels_last) == ("cpu", expected, True)
    assert resolve_runtime("cpu", "bf16").autocast_dtype == torch.bfloat16
    assert resolve_runtime("cpu", "fp32").autocast_dtype is None


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    from transferlab.engine import runtime as module

    for flags, expected in (("fpu avx2 avx512f avx512_bf16", True), ("fpu avx2 fma", False),
                            ("Features: fp asimd bf16 i8mm", True), ("flags: avx512bw avx512_vnni", False)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor: 0\nflags\t\t: {flags}\n")
        module.native_bf16.cache_clear()
        original = module.Path
        monkeypatch.setattr(module, "Path", lambda p, original=original: original(cpuinfo))
        assert module.native_bf16() is expected, flags
        monkeypatch.setattr(module, "Path", original)
    module.native_bf16.cache_clear()


@pytest.mark.parametrize("device, precision, message", [
    ("cuda", "auto", "no CUDA GPU"), ("tpu", "auto", "unknown device"), ("cpu", "fp16", "fp16 runs on GPUs only"),
    ("cpu", "fp8", "unknown precision"),
])
def test_a_runtime_that_cannot_be_had_is_a_user_error(monkeypatch, device, precision, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=message):
        resolve_runtime(device, precision)


def test_torchrun_variables_give_the_rank_and_world_size_and_join_the_process_group(monkeypatch):
    from transferlab.engine import distributed

    joined = []
    monkeypatch.setattr(distributed, "setup", joined.append)  # the real one waits for the other ranks
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    runtime = resolve_runtime("cpu", "fp32")
    assert (runtime.rank, runtime.world_size, runtime.is_main) == (1, 2, False)
    assert joined == ["cpu"]


def test_fit_learns_and_records_one_history_entry_per_epoch():
    _, state = linear_fit(epochs=4)
    assert [h["epoch"] for h in state.history] == [1, 2, 3, 4]
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert state.history[-1]["val_accuracy"] > 0.9


def test_the_same_seed_gives_the_same_epochs_and_another_seed_other_batches():
    assert linear_fit(seed=3)[1].history[0]["train_loss"] == linear_fit(seed=3)[1].history[0]["train_loss"]
    assert linear_fit(seed=3)[1].history[0]["train_loss"] != linear_fit(seed=4)[1].history[0]["train_loss"]


def test_early_stopping_stops_and_restores_the_best_weights():
    model = nn.Linear(2, 2)
    stopper = EarlyStopping("val_loss", patience=2)
    state = FitState(model, None, None, "train", 10)
    weights = []
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.9]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        weights.append(epoch)
        state.epoch = epoch
        stopper.on_epoch_end(state, {"val_loss": loss})
    stopper.on_fit_end(state)
    assert state.stop and stopper.best_epoch == 1
    assert torch.all(model.weight == 1.0)


def test_early_stopping_on_accuracy_prefers_higher_values():
    stopper = EarlyStopping("val_accuracy", patience=5)
    state = FitState(nn.Linear(1, 1), None, None, "train", 5)
    for epoch, accuracy in enumerate([0.5, 0.9, 0.7]):
        state.epoch = epoch
        stopper.on_epoch_end(state, {"val_accuracy": accuracy})
    assert stopper.best_epoch == 1 and not state.stop


def test_a_loss_that_is_not_finite_is_a_user_error():
    with pytest.raises(UserError, match="lower the learning rate"):
        linear_fit(lr=1e38, epochs=3)


def test_evaluate_and_predict_run_in_eval_mode_and_leave_the_mode_as_it_was():
    model = nn.Sequential(nn.Linear(8, 3), nn.Dropout(0.9))
    model.train()
    data = blobs()
    first = evaluate(model, data, Runtime(), 16)
    second = evaluate(model, data, Runtime(), 16)
    assert first == second and model.training
    outputs = [out for _, out in predict(model, model, [data.values[:5], None], Runtime(), inputs_of=lambda x: x)]
    assert outputs[0].shape == (5, 3) and outputs[1] is None and model.training


def test_bf16_autocast_runs_the_same_loop_and_stays_close_to_fp32():
    x = blobs().values[:16]
    model = nn.Linear(8, 3)
    (_, fp32), = predict(model, model, [x], Runtime(precision="fp32"), inputs_of=lambda t: t)
    (_, bf16), = predict(model, model, [x], Runtime(precision="bf16"), inputs_of=lambda t: t)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, fp32, atol=0.1) and not torch.equal(bf16, fp32)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_fit_on_the_gpu_learns_like_on_the_cpu(precision):
    runtime = resolve_runtime("cuda", precision)
    _, state = linear_fit(runtime=runtime, epochs=4)
    assert state.history[-1]["val_accuracy"] > 0.9


def test_compile_runs_the_same_numbers_through_torch_compile():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = blobs().values[:8]
    (_, eager), = predict(model, model, [x], Runtime(), inputs_of=lambda t: t)
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = Runtime(compile=True).compiled(model, inference=True)
    torch.testing.assert_close(compiled(x), eager, rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1  # dynamo captured the model as one graph
    assert Runtime().compiled(model) is model


def test_a_resumed_fit_names_its_epochs_from_where_it_goes_on():
    from transferlab.engine.callbacks import BatchProgress

    labels = []
    model = nn.Linear(8, 3)
    learner = Learner(model, Runtime(), nn.CrossEntropyLoss(), lambda m, stage: torch.optim.SGD(m.parameters(), lr=0.1),
                      blobs(), batch_size=30, callbacks=[BatchProgress(lambda label, *_: labels.append(label))])
    learner.fit(3, first_epoch=1)
    assert labels == ["train epoch 2/3"] * 2 + ["train epoch 3/3"] * 2


def stopped_at(values: list[float], patience: int, baseline: float | None = None,
               margin: float = 0.0) -> tuple[int, int, bool]:
    """(epochs run, 0-based epoch kept (-1: the record started from), stopped) of an accuracy curve."""
    model = nn.Linear(1, 1)
    stopper = EarlyStopping("val_accuracy", patience=patience)
    stopper.baseline_margin = margin
    state = FitState(model, None, None, "train", len(values))
    if baseline is not None:
        stopper.start_from({"val_accuracy": baseline}, model)
    run = 0
    for epoch, accuracy in enumerate(values):
        state.epoch, run = epoch, epoch + 1
        stopper.on_epoch_end(state, {"val_accuracy": accuracy})
        if state.stop:
            break
    return run, stopper.best_epoch, state.stop


def test_a_margin_keeps_the_stage_before_until_beaten_by_more_than_it():
    """``keep_margin`` 1 of 100 validation images (a margin of 1.5%): one image up is not enough, two are; the
    epoch kept by the stopper and the one the result names agree."""
    from transferlab.finetune.run import keep_margin_fraction, restored_epoch

    margin = keep_margin_fraction(1, 100)
    assert stopped_at([0.81, 0.80, 0.81], patience=5, baseline=0.8, margin=margin)[1] == -1
    assert stopped_at([0.81, 0.82, 0.81], patience=5, baseline=0.8, margin=margin)[1] == 1
    assert stopped_at([0.81, 0.80, 0.81], patience=5, baseline=0.8)[1] == 0
    history = [{"epoch": 1, "stage": "head", "val_accuracy": 0.80}, {"epoch": 2, "stage": "fine-tune", "val_accuracy": 0.81}]
    assert restored_epoch(history, "val_accuracy", margin) == 1
    assert restored_epoch(history, "val_accuracy") == 2
    assert restored_epoch(history + [{"epoch": 3, "stage": "fine-tune", "val_accuracy": 0.82}], "val_accuracy", margin) == 3


def test_a_stage_that_cannot_beat_the_stage_before_by_the_margin_is_skipped():
    from types import SimpleNamespace

    from transferlab.finetune.run import FinetuneRun, keep_margin_fraction

    run = FinetuneRun.__new__(FinetuneRun)  # only the two attributes the decision reads
    run.early_stopping, stage = "val_accuracy", SimpleNamespace(keeps_earlier_end=True)
    for images, before, skipped in ((0, 0.99, False), (0, 1.0, True), (1, 0.98, False), (1, 0.99, True)):
        run.keep_margin = keep_margin_fraction(images, 100)
        assert run.cannot_improve(stage, [{"val_accuracy": before}]) is skipped, (images, before)


def test_patience_counts_from_the_fits_own_best_and_the_stage_before_is_kept_until_beaten():
    # a stage that first falls below the stage before (heavy augmentation) and climbs back above it
    assert stopped_at([0.56, 0.65, 0.69, 0.70, 0.82, 0.80], patience=3, baseline=0.8) == (6, 4, False)
    # one that only falls: stopped `patience` epochs after its own best, the stage before kept
    assert stopped_at([0.5, 0.4, 0.3, 0.2, 0.9], patience=3, baseline=0.8) == (4, -1, True)
    # without a record to start from, the fit's best is the best kept
    assert stopped_at([0.5, 0.6, 0.55, 0.58, 0.9], patience=2) == (4, 1, True)
