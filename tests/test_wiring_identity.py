"""Every option has a wiring test; speed-only options leave a run's identity alone, every other option changes it;
runs that share an extraction share exactly the settings that decide the features.

The option lists are read from the records themselves (``dataclasses.fields``, ``speed_only_fields``), so an
option added without a wiring test, or a field whose speed-only flag is dropped or added, fails here.
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

from wiring import PROBE, WIRED, ProbeRecorder, one_thread  # noqa: F401
from transferlab.finetune.config import FinetuneConfig
from transferlab.options import speed_only_fields
from transferlab.probing.config import ProbeConfig
from transferlab.rank.config import AuditConfig, RankConfig
from transferlab.auto.config import AutoConfig

CONFIGS = (ProbeConfig, FinetuneConfig)  # the records whose runs a study identifies
WIRED_CONFIGS = (*CONFIGS, RankConfig, AuditConfig, AutoConfig)  # every record with command-line options
WIRING_MODULES = ("test_wiring_finetune", "test_wiring_probe", "test_recipes", "test_head_init", "test_calibration_tta",
                  "test_learner_features", "test_wiring_rank", "test_rank", "test_audit", "test_wiring_auto", "test_auto")

# The options that by contract only change how fast a run goes or where it writes (the records say so; this says
# which ones may): a field moved in or out of this set changes which runs a study treats as the same experiment.
SHARED_SPEED_ONLY = {"device", "compile", "num_workers", "log", "log_dir", "log_experiment", "log_run"}
EXPECTED_SPEED_ONLY = {ProbeConfig: SHARED_SPEED_ONLY | {"cache"},
                       FinetuneConfig: SHARED_SPEED_ONLY | {"prefix_cache", "output", "resume"}}

# field: (settings it needs, a value other than its default)
CHANGES: dict[str, tuple[dict, object]] = {
    "data": ({}, "elsewhere"), "seed": ({}, 1), "per_class": ({}, 5), "classes": ({}, ["a", "b"]),
    "num_classes": ({}, 3), "ratios": ({}, (0.6, 0.2, 0.2)), "val_per_class": ({}, 2), "test_per_class": ({}, 2),
    "folds": ({}, 3), "fold": ({"folds": 3}, 1),
    "backbone": ({}, "resnet18"), "weights": ({}, "weights.pt"), "random_init": ({}, True), "image_size": ({}, 64),
    "device": ({}, "cpu"), "precision": ({}, "fp32"), "compile": ({}, True), "batch_size": ({}, 8),
    "num_workers": ({}, 2),
    "log": ({}, ["tensorboard"]), "log_dir": ({}, "logs"), "log_experiment": ({}, "e"), "log_run": ({}, "r"),
    # fine-tuning
    "freeze": ({}, "all"), "dropout": ({}, 0.5), "optimizer": ({}, "sgd"), "lr": ({}, 0.01),
    "backbone_lr": ({}, 1e-4), "layer_decay": ({}, 0.5), "train_bn": ({}, False), "weight_decay": ({}, 0.01),
    "schedule": ({}, "cosine"), "warmup_epochs": ({}, 1), "epochs": ({}, 3), "stage2_epochs": ({}, 2),
    "stage2_lr": ({}, 1e-5), "early_stopping": ({}, "val_accuracy"), "patience": ({}, 3), "augment": ({}, ["flip"]),
    "rotation": ({}, 20.0), "zoom": ({}, 0.3), "stage2_optimizer": ({}, "sgd"), "mixup": ({}, 0.2),
    "cutmix": ({}, 0.2), "label_smoothing": ({}, 0.1), "class_weights": ({}, True), "prefix_cache": ({}, False),
    "output": ({}, "elsewhere"), "resume": ({}, True), "ema": ({}, 0.99), "accumulate": ({}, 2),
    "sampler": ({}, "balanced"), "head_init": ({}, "sgd"), "keep_margin": ({}, 2), "calibrate": ({}, True), "tta": ({}, 3),
    "lr_find": ({}, True),
    # probing
    "layer": ({}, "logits"), "temperature": ({}, 2.0), "C": ({}, 0.5), "head_epochs": ({}, 5),
    "head_lr": ({}, 0.01), "head_patience": ({}, 3), "head_batch_size": ({}, 16), "cache": ({}, False),
    "head_weight_decay": ({}, 0.01), "recipe": ({}, "best"),
}
HEAD_CHANGE = {ProbeConfig: "svm", FinetuneConfig: "mlp:8"}
POOLING_CHANGE = {ProbeConfig: "max", FinetuneConfig: "flatten"}


def change_of(config_class, name: str) -> tuple[dict, object]:
    if name == "head":
        return {}, HEAD_CHANGE[config_class]
    if name == "pooling":
        return {}, POOLING_CHANGE[config_class]
    return CHANGES[name]


def identities(config) -> dict[str, str]:
    """Every identity a run gets from its settings: the study's run id, the model folder's settings id, the
    run name in the logs."""
    from transferlab.finetune.run import config_id
    from transferlab.probing.run import probe_run_name
    from transferlab.study.identity import run_id

    kind = "finetune" if isinstance(config, FinetuneConfig) else "probe"
    own = config_id(config) if kind == "finetune" else probe_run_name(config)
    return {"study": run_id(kind, config, "fingerprint"), "own": own}


@pytest.mark.parametrize("config_class", WIRED_CONFIGS, ids=lambda c: c.__name__)
def test_every_option_of_the_records_has_a_wiring_test(config_class):
    if config_class is AutoConfig:
        pytest.importorskip("optuna")  # test_wiring_auto needs it
    for module in WIRING_MODULES:
        try:
            importlib.import_module(module)
        except pytest.skip.Exception:  # an optional extra is missing: its record is skipped above
            pass
    missing = [f.name for f in dataclasses.fields(config_class) if f"{config_class.__name__}.{f.name}" not in WIRED]
    assert not missing, f"options of {config_class.__name__} without a wiring test: {missing}"
    for key, tests in WIRED.items():
        record, _, name = key.partition(".")
        assert record in {c.__name__ for c in WIRED_CONFIGS}, key
        assert name in {f.name for f in dataclasses.fields(next(c for c in WIRED_CONFIGS if c.__name__ == record))}, key
        for test in tests:
            module, _, function = test.partition("::")
            assert callable(getattr(importlib.import_module(module), function, None)), test


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda c: c.__name__)
def test_speed_only_fields_leave_the_run_identity_alone_and_every_other_field_changes_it(config_class):
    speed = speed_only_fields(config_class)
    assert speed == EXPECTED_SPEED_ONLY[config_class]
    for field in dataclasses.fields(config_class):
        needs, value = change_of(config_class, field.name)
        before = identities(config_class(**needs))
        after = identities(config_class(**needs, **{field.name: value}))
        if field.name in speed:
            assert after == before, f"speed-only {field.name} changed the run identity"
        elif field.name == "data":  # the study's id holds the data's fingerprint, not its path
            assert after["own"] != before["own"] and after["study"] == before["study"]
        else:
            assert after["own"] != before["own"] and after["study"] != before["study"], field.name


RANK_CHANGES = {"backbones": ["resnet18"], "layers": ["2"], "poolings": ["max"], "k": 3, "probes": False}
RANK_REFUSED = {"folds", "fold"}  # rank scores on its own validation split: RankConfig refuses them


def test_a_rank_methods_run_identity_changes_with_every_field_but_the_speed_only_ones():
    """A study's rank method is identified by its RankConfig as probe and fine-tuning runs are by theirs."""
    from transferlab.study.identity import run_id

    speed = speed_only_fields(RankConfig)
    assert speed == {"device", "compile", "num_workers", "cache"}
    before = run_id("rank", RankConfig(), "fingerprint")
    for field in dataclasses.fields(RankConfig):
        if field.name in RANK_REFUSED:
            continue
        value = RANK_CHANGES[field.name] if field.name in RANK_CHANGES else change_of(RankConfig, field.name)[1]
        after = run_id("rank", RankConfig(**{field.name: value}), "fingerprint")
        assert (after == before) == (field.name in speed or field.name == "data"), field.name


def test_the_study_run_id_holds_the_runner_and_the_datas_fingerprint():
    from transferlab.study.identity import run_id

    config = ProbeConfig()
    assert run_id("probe", config, "a") != run_id("probe", config, "b")
    assert run_id("probe", config, "a") != run_id("finetune", config, "a")


# -- extraction shared between a study's runs ----------------------------------------------------------------------

def image_size_study(tmp_path):
    from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
    from transferlab.study import load_study, plan_study

    make_image_folder(tmp_path / "data", per_class=6)
    path = write_study(tmp_path, f"""
        name: sizes
        data: data
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8, precision: fp32}}
        methods:
          - {{name: logreg, kind: probe, head: logreg}}
        sweep:
          image_size: [32, 48]
        """)
    return plan_study(load_study(path))


def test_runs_at_other_image_sizes_share_no_extraction_and_no_cached_feature(tmp_path, monkeypatch):
    from transferlab.probing.run import probe
    from transferlab.study import RunStore, run_study
    from transferlab.study.prefetch import prefetch_share, shared_extractions

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    plan = image_size_study(tmp_path)
    pending = {run.run_id for run in plan.runs}
    assert sorted(run.config.image_size for run in plan.runs) == [32, 48]
    shared = shared_extractions(plan, pending)
    assert sorted(config.image_size for config, _ in shared.values()) == [32, 48]
    prefetch_share(plan, pending, 0, 1)
    seen = ProbeRecorder(monkeypatch)
    with RunStore(tmp_path / "runs.sqlite") as store:
        assert run_study(plan, store).count("done") == 2
        results = {run.config.image_size: store.get(run.run_id).result for run in plan.runs}
    assert all(r.features_computed == 0 and r.features_from_cache > 0 for r in results.values())
    fitted = {}
    for _, X, _ in seen.fits:  # the size of the extraction each fitted matrix came from
        extractor = next(e for e, _, features in seen.extractions if features.shape == X.shape and np.array_equal(
            features, X))
        fitted[extractor.backbone.data_config["input_size"][-1]] = X
    assert sorted(fitted) == [32, 48]
    for size in (32, 48):  # each run read features of its own size
        seen.clear()
        config = next(run.config for run in plan.runs if run.config.image_size == size)
        probe(config.data, **{**PROBE, "seed": config.seed, "image_size": size, "cache": False})
        np.testing.assert_allclose(fitted[size], seen.fits[-1][1], rtol=1e-4, atol=1e-5)
    assert not np.allclose(fitted[32], fitted[48])
