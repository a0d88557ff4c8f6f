"""Every ``rank`` and ``audit`` option reaches what it drives, observed while the real command runs: the split
(``load_dataset``), the runtime (``resolve_runtime``), the feature extractor and the K-fold probe. The scores'
own options (k, C, layers, poolings, probes...) are followed in test_rank and test_audit."""

from __future__ import annotations

import pytest

from helpers import make_class_folders
from wiring import wires

DATA = ("data", "seed", "per_class", "classes", "num_classes", "ratios", "val_per_class", "test_per_class")
RUNTIME = ("device", "precision", "compile", "batch_size", "num_workers", "cache")


@pytest.fixture
def spies(monkeypatch):
    """The split's arguments, the runtime asked for and each feature extractor's settings."""
    import transferlab.data
    import transferlab.engine
    from transferlab.features import extract

    seen = {"split": [], "runtime": [], "extractor": [], "folds": []}
    real_load, real_runtime = transferlab.data.load_dataset, transferlab.engine.resolve_runtime
    monkeypatch.setattr(transferlab.data, "load_dataset",
                        lambda data, **kw: seen["split"].append({"data": str(data), **kw}) or real_load(data, **kw))

    def resolve_runtime(device, precision, compile=False):
        seen["runtime"].append((device, precision, compile))
        return real_runtime(device, precision, compile=False)  # compiling itself is the engine's, tested there

    monkeypatch.setattr(transferlab.engine, "resolve_runtime", resolve_runtime)
    real_init = extract.FeatureExtractor.__init__

    def init(self, backbone, *args, **kwargs):
        real_init(self, backbone, *args, **kwargs)
        seen["extractor"].append({"backbone": backbone.name, "layer": self.layer, "pooling": self.pooling,
                                  "batch_size": self.batch_size, "num_workers": self.num_workers,
                                  "cache": self.cache is not None})

    monkeypatch.setattr(extract.FeatureExtractor, "__init__", init)
    from transferlab.data import folds

    real_folds = folds.fold_indices
    monkeypatch.setattr(folds, "fold_indices", lambda labels, k, seed: seen["folds"].append((k, seed))
                        or real_folds(labels, k, seed))
    return seen


SPLIT_ARGS = ("--seed", "2", "--per-class", "4", "--classes", "a,b,c", "--num-classes", "3", "--split",
              "0.6,0.2,0.2", "--val-per-class", "2", "--test-per-class", "2")
RUNTIME_ARGS = ("--device", "cpu", "--precision", "fp32", "--compile", "--batch-size", "3", "--workers", "0",
                "--no-cache")
EXPECTED_SPLIT = {"seed": 2, "per_class": 4, "classes": ["a", "b", "c"], "num_classes": 3, "ratios": (0.6, 0.2, 0.2),
                  "val_per_class": 2, "test_per_class": 2}


@wires(*(f"RankConfig.{name}" for name in DATA + RUNTIME))
def test_rank_data_and_runtime_options_reach_the_split_and_the_extractor(tmp_path, cli, spies):
    data = make_class_folders(tmp_path / "data", {"a": 9, "b": 9, "c": 9, "d": 9})
    result = cli("rank", "--data", str(data), "--backbones", "test_efficientnet", "--random-init", "--layers", "0",
                 *SPLIT_ARGS, *RUNTIME_ARGS, "--json")
    assert result.returncode == 0, result.stderr
    (split,) = spies["split"]
    assert split["data"] == str(data) and {k: split[k] for k in EXPECTED_SPLIT} == EXPECTED_SPLIT
    assert spies["runtime"] == [("cpu", "fp32", True)]
    assert [(e["batch_size"], e["num_workers"], e["cache"]) for e in spies["extractor"]] == [(3, 0, False)]


@wires("RankConfig.folds", "RankConfig.fold", "AuditConfig.fold")
def test_rank_and_audit_refuse_fold_options_they_would_ignore():
    from transferlab.errors import UserError
    from transferlab.rank.config import AuditConfig, RankConfig

    for bad in ({"folds": 3}, {"fold": 1}):
        with pytest.raises(UserError, match="no --folds|no --fold"):
            RankConfig(**bad)
    with pytest.raises(UserError, match="no --fold"):
        AuditConfig(fold=1)


@wires(*(f"AuditConfig.{name}" for name in DATA + RUNTIME + ("backbone", "layer", "pooling", "folds")))
def test_audit_data_runtime_and_feature_options_reach_the_split_the_extractor_and_the_folds(tmp_path, cli, spies):
    pytest.importorskip("imagehash")
    data = make_class_folders(tmp_path / "data", {"a": 9, "b": 9, "c": 9, "d": 9})
    result = cli("audit", "--data", str(data), "--backbone", "efficientnet_lite0", "--layer", "2", "--pooling", "max",
                 "--folds", "3", *SPLIT_ARGS, *RUNTIME_ARGS, "--json")
    assert result.returncode == 0, result.stderr
    (split,) = spies["split"]
    assert split["data"] == str(data) and {k: split[k] for k in EXPECTED_SPLIT} == EXPECTED_SPLIT
    assert spies["runtime"] == [("cpu", "fp32", True)]
    (extractor,) = spies["extractor"]
    assert extractor["backbone"] == "efficientnet_lite0" and extractor["pooling"] == "max"
    from transferlab.backbones import load_backbone

    assert extractor["layer"] == load_backbone("efficientnet_lite0", random_init=True).find_feature_layer("2").name
    assert (extractor["batch_size"], extractor["num_workers"], extractor["cache"]) == (3, 0, False)
    assert spies["folds"] == [(3, 2)]
