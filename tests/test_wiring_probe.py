"""Every probe option reaches the loop: each test runs the real ``probe`` and looks at what it extracted and fitted.

Recorded at the boundaries (``wiring.ProbeRecorder``, ``wiring.Recorder``): the images each extraction read and
the batches the backbone saw, the features, the scikit-learn pipeline fitted and its data, and for the trained
heads the engine's steps (batches, rates, callbacks). Tiny random network, 32 px, 18 made images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wiring import PROBE, ProbeRecorder, Recorder, one_thread, rates, small_folder, wires  # noqa: F401
from transferlab.errors import UserError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return small_folder(tmp_path_factory.mktemp("wiring-probe") / "data")


@pytest.fixture
def seen(monkeypatch) -> ProbeRecorder:
    return ProbeRecorder(monkeypatch)


@pytest.fixture
def rec(monkeypatch) -> Recorder:
    return Recorder(monkeypatch)


def run(seen: ProbeRecorder, data: Path, **options):
    from transferlab.probing.run import probe

    seen.clear()
    return probe(str(data), **{**PROBE, **options})


def split_paths(seen: ProbeRecorder) -> dict[str, list[Path]]:
    """The extractions' paths by part: train, (val,) test, in the order the probe extracts them."""
    names = ["train", "val", "test"] if len(seen.extractions) == 3 else ["train", "test"]
    return {name: seen.paths(i) for i, name in enumerate(names)}


# -- data selection -------------------------------------------------------------------------------------------------

@wires("ProbeConfig.data", "ProbeConfig.classes", "ProbeConfig.num_classes")
def test_data_classes_and_num_classes_decide_the_images_and_labels_fitted(seen, data, tmp_path):
    other = small_folder(tmp_path / "other", {"p": 5, "q": 5})
    result = run(seen, other)
    assert result.classes == ["p", "q"]
    assert {p.parent.name for p in split_paths(seen)["train"]} == {"p", "q"}
    _, _, y = seen.fits[-1]
    assert sorted(set(y.tolist())) == [0, 1]
    run(seen, data, classes=["a", "c"])
    assert {p.parent.name for part in split_paths(seen).values() for p in part} == {"a", "c"}
    run(seen, data, num_classes=2)
    assert {p.parent.name for part in split_paths(seen).values() for p in part} == {"a", "b"}


@wires("ProbeConfig.per_class", "ProbeConfig.ratios", "ProbeConfig.val_per_class", "ProbeConfig.test_per_class")
def test_split_sizes_decide_how_many_images_are_extracted_and_fitted(seen, data):
    run(seen, data, per_class=2)
    assert len(split_paths(seen)["train"]) == 6 and len(seen.fits[-1][1]) == 6
    run(seen, data, ratios=(0.5, 0.25, 0.25))
    parts = split_paths(seen)
    assert len(parts["train"]) == 9 and len(parts["test"]) in (4, 5)
    run(seen, data, head="linear", head_epochs=2, val_per_class=2, test_per_class=1)
    parts = split_paths(seen)
    assert (len(parts["val"]), len(parts["test"])) == (6, 3)


@wires("ProbeConfig.folds", "ProbeConfig.fold")
def test_folds_and_fold_choose_the_images_held_out(seen, data):
    tests = {}
    for folds, fold in ((3, 0), (3, 1), (2, 0)):
        run(seen, data, folds=folds, fold=fold)
        parts = split_paths(seen)
        tests[folds, fold] = set(parts["test"])
        assert len(parts["test"]) == 18 // folds and not set(parts["train"]) & set(parts["test"])
    assert not tests[3, 0] & tests[3, 1]


@wires("ProbeConfig.seed")
def test_seed_decides_the_split(seen, data):
    run(seen, data, seed=0)
    zero = split_paths(seen)["train"]
    run(seen, data, seed=0)
    assert split_paths(seen)["train"] == zero
    run(seen, data, seed=1)
    assert set(split_paths(seen)["train"]) != set(zero)


# -- the backbone and its features --------------------------------------------------------------------------------

@wires("ProbeConfig.backbone", "ProbeConfig.image_size")
def test_backbone_and_image_size_are_what_extracts(seen, data):
    run(seen, data, image_size=48)
    assert {tuple(x.shape[1:]) for x in seen.batches} == {(3, 48, 48)}
    assert type(seen.extractions[0][0].backbone.model).__name__ == "EfficientNet"
    run(seen, data, image_size=40, backbone="test_resnet")
    assert {tuple(x.shape[1:]) for x in seen.batches} == {(3, 40, 40)}
    assert type(seen.extractions[0][0].backbone.model).__name__ == "ResNet"


@wires("ProbeConfig.weights", "ProbeConfig.random_init")
def test_weights_and_random_init_decide_the_extracting_backbone(seen, data, tmp_path):
    import timm

    from transferlab.backbones import load_backbone

    torch.manual_seed(123)
    saved = timm.create_model("test_efficientnet").state_dict()
    torch.save(saved, tmp_path / "w.pt")
    run(seen, data, random_init=False, weights=str(tmp_path / "w.pt"))
    torch.testing.assert_close(seen.extractions[0][0].backbone.model.conv_stem.weight, saved["conv_stem.weight"])
    pretrained = load_backbone("efficientnet_lite0").model.conv_stem.weight
    run(seen, data, backbone="efficientnet_lite0", random_init=False)
    torch.testing.assert_close(seen.extractions[0][0].backbone.model.conv_stem.weight, pretrained)
    run(seen, data, backbone="efficientnet_lite0", random_init=True)
    assert not torch.allclose(seen.extractions[0][0].backbone.model.conv_stem.weight, pretrained)


@wires("ProbeConfig.layer", "ProbeConfig.pooling")
def test_layer_and_pooling_decide_the_features_fitted(seen, data):
    result = run(seen, data)
    pooled = seen.fits[-1][1].shape[1]
    assert pooled == result.feature_dim
    result = run(seen, data, layer="2", image_size=64)
    channels, height, width = seen.extractions[0][0].backbone.feature_layers[2].shape
    assert seen.fits[-1][1].shape[1] == channels != pooled
    avg = seen.fits[-1][1]
    run(seen, data, layer="2", image_size=64, pooling="max")
    assert seen.fits[-1][1].shape == avg.shape and not np.allclose(seen.fits[-1][1], avg)
    run(seen, data, layer="2", image_size=64, pooling="flatten")
    assert seen.fits[-1][1].shape[1] == channels * height * width > channels


@wires("ProbeConfig.temperature")
def test_temperature_turns_the_logits_into_the_probabilities_fitted(seen, data):
    run(seen, data, temperature=2.0)
    logits = seen.extractions[0][2]
    assert logits.shape[1] == seen.extractions[0][0].backbone.model.num_classes
    X = seen.fits[-1][1]
    expected = torch.softmax(torch.from_numpy(logits).double() / 2.0, dim=1).numpy()
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-7)
    run(seen, data, temperature=0.5)
    assert not np.allclose(seen.fits[-1][1], X)


@wires("ProbeConfig.C")
def test_C_is_the_fitted_models_regularisation(seen, data):
    run(seen, data, C=0.01)
    assert seen.fits[-1][0][-1].C == 0.01
    run(seen, data, head="svm", C=3.0)
    assert seen.fits[-1][0][-1].C == 3.0


# -- the head and its training ------------------------------------------------------------------------------------

@wires("ProbeConfig.head")
def test_head_is_the_model_fitted(seen, rec, data):
    run(seen, data, head="logreg")
    assert type(seen.fits[-1][0][-1]).__name__ == "LogisticRegression" and not rec.take().steps
    run(seen, data, head="knn")
    assert type(seen.fits[-1][0][-1]).__name__ == "KNeighborsClassifier"
    run(seen, data, head="mlp:8", head_epochs=1)
    steps = rec.take().steps
    head_shapes = [shape for g in steps[0].groups for shape in g["shapes"]]
    assert steps and (8,) in head_shapes and (3, 8) in head_shapes


@wires("ProbeConfig.dropout")
def test_dropout_is_the_trained_heads(seen, rec, data):
    for p in (0.5, 0.0):
        run(seen, data, head="mlp:8", head_epochs=1, dropout=p)
        model = rec.take().steps[0].model
        assert [m.p for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0] == ([p] if p else [])


@wires("ProbeConfig.head_epochs", "ProbeConfig.head_lr", "ProbeConfig.head_batch_size")
def test_head_epochs_rate_and_batch_are_the_engines(seen, rec, data):
    run(seen, data, head="linear", head_epochs=3, head_lr=0.02, head_batch_size=5)
    done = rec.take()
    assert len(done.epochs) == 3
    assert {lr for s in done.steps for lr in rates(s).values()} == {0.02}
    for epoch in range(3):
        sizes = [len(s.inputs) for s in done.steps if s.epoch == epoch]
        assert len(sizes) > 1 and sizes[:-1] == [5] * (len(sizes) - 1) and 0 < sizes[-1] <= 5


@wires("ProbeConfig.head_weight_decay")
def test_head_weight_decay_is_the_optimizers(seen, rec, data):
    run(seen, data, head="linear", head_epochs=1, head_weight_decay=0.03)
    groups = [g for s in rec.take().steps for g in s.groups]
    assert groups and {g["weight_decay"] for g in groups} - {0.0} == {0.03}


@wires("ProbeConfig.head_patience")
def test_head_patience_is_what_the_engine_stops_on(seen, rec, data):
    from transferlab.engine.callbacks import EarlyStopping

    run(seen, data, head="linear", head_epochs=3, head_patience=7)
    stoppers = [c for c in rec.take().epochs[0].callbacks if isinstance(c, EarlyStopping)]
    assert [(s.monitor, s.patience) for s in stoppers] == [("val_loss", 7)]


@wires("ProbeConfig.cache")
def test_cache_decides_whether_features_are_read_back(seen, data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    first = run(seen, data)
    assert first.features_computed == 15 and first.features_from_cache == 0
    computed = seen.fits[-1][1]
    again = run(seen, data)
    assert (again.features_computed, again.features_from_cache) == (0, 15)
    assert seen.batches == []
    np.testing.assert_allclose(seen.fits[-1][1], computed, rtol=1e-6)
    fresh = run(seen, data, cache=False)
    assert (fresh.features_computed, fresh.features_from_cache) == (15, 0)
    assert sum(len(x) for x in seen.batches) == 15


# -- where and how it runs ------------------------------------------------------------------------------------------

@wires("ProbeConfig.batch_size")
def test_batch_size_is_the_extractions_batch(seen, data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    run(seen, data, batch_size=5, cache=False)
    assert max(len(x) for x in seen.batches) == 5 and sum(len(x) for x in seen.batches) == 15


@wires("ProbeConfig.precision")
def test_precision_is_the_extractions_autocast(seen, data):
    run(seen, data, precision="bf16", cache=False)
    assert set(seen.output_dtypes) == {torch.bfloat16}
    run(seen, data, precision="fp32", cache=False)
    assert set(seen.output_dtypes) == {torch.float32}


@wires("ProbeConfig.device")
def test_device_is_where_the_extraction_runs(seen, data):
    result = run(seen, data, device="cpu", cache=False)
    assert result.runtime["device"] == "cpu" and {x.device.type for x in seen.batches} == {"cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda"):
            run(seen, data, device="cuda")


def test_extraction_batches_reach_the_backbone_channels_last_on_the_cpu(seen, data):
    run(seen, data, device="cpu", cache=False)
    assert seen.batches and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen.batches)


@wires("ProbeConfig.compile")
def test_compile_compiles_the_extraction(seen, data, monkeypatch):
    """torch.compile itself is recorded, not run (it takes seconds to minutes)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: compiled.append(fn) or fn)
    result = run(seen, data, cache=False)
    assert compiled == [] and result.runtime["compile"] is False
    result = run(seen, data, cache=False, compile=True)
    assert compiled and result.runtime["compile"] is True


@wires("ProbeConfig.num_workers")
def test_num_workers_are_the_extractions_workers(seen, data, monkeypatch):
    from torch.utils.data import DataLoader

    workers = []
    real_init = DataLoader.__init__

    def init(self, *args, **kwargs):
        workers.append(kwargs.get("num_workers", 0))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "__init__", init)
    run(seen, data, num_workers=1, cache=False, batch_size=4)
    assert workers.count(1) >= 2, "train and test images"
    workers.clear()
    run(seen, data, num_workers=0, cache=False, batch_size=4)
    assert workers and set(workers) == {0}


@wires("ProbeConfig.log", "ProbeConfig.log_dir", "ProbeConfig.log_experiment", "ProbeConfig.log_run")
def test_log_options_write_the_heads_epochs_where_they_say(seen, data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run(seen, data, head="linear", head_epochs=2, log=["tensorboard"], log_dir=str(tmp_path / "tb"),
                 log_experiment="exp", log_run="first")
    folder = tmp_path / "tb" / "exp" / "first"
    events = EventAccumulator(str(folder))
    events.Reload()
    losses = [e.value for e in events.Scalars("train_loss")]
    assert losses == pytest.approx([h["train_loss"] for h in result.history], rel=1e-6) and len(losses) == 2
