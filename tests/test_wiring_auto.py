"""Every ``auto`` option reaches what it drives: the ranking and the probes (``run_rank``'s records), the fine-tuning
trials (``run_finetune``'s records, which the finetune wiring tests follow into the loop), the pruner and the
Optuna study. Observed while the real command runs."""

from __future__ import annotations

import json

import pytest

from helpers import make_class_folders
from wiring import wires

pytest.importorskip("optuna")


@pytest.fixture
def spies(monkeypatch):
    """The records ``run_rank`` and ``run_finetune`` were called with and the pruner's arguments."""
    import optuna

    from transferlab.finetune import run as finetune_run
    from transferlab.rank import run as rank_run

    seen = {"rank": [], "finetune": [], "pruner": []}
    real_rank, real_finetune = rank_run.run_rank, finetune_run.run_finetune

    def run_rank(config, *args, **kwargs):
        seen["rank"].append(config)
        return real_rank(config, *args, **kwargs)

    def run_finetune(config, *args, **kwargs):
        seen["finetune"].append(config)
        return real_finetune(config, *args, **kwargs)

    monkeypatch.setattr(rank_run, "run_rank", run_rank)
    monkeypatch.setattr(finetune_run, "run_finetune", run_finetune)
    for name in ("SuccessiveHalvingPruner", "HyperbandPruner"):
        pruner = getattr(optuna.pruners, name)
        monkeypatch.setattr(pruner, "__init__", lambda self, real=pruner.__init__, name=name, **kw:
                            seen["pruner"].append((name, kw)) or real(self, **kw))
    return seen


DATA_AND_RUNTIME = ("AutoConfig.data", "AutoConfig.seed", "AutoConfig.per_class", "AutoConfig.classes",
                    "AutoConfig.num_classes", "AutoConfig.ratios", "AutoConfig.val_per_class",
                    "AutoConfig.test_per_class", "AutoConfig.device", "AutoConfig.precision",
                    "AutoConfig.batch_size", "AutoConfig.num_workers", "AutoConfig.cache")
SEARCH = ("AutoConfig.backbones", "AutoConfig.random_init", "AutoConfig.probe_top", "AutoConfig.finetune_top",
          "AutoConfig.freezes", "AutoConfig.lr_min", "AutoConfig.lr_max", "AutoConfig.max_epochs",
          "AutoConfig.min_epochs", "AutoConfig.reduction_factor", "AutoConfig.pruner", "AutoConfig.max_trials",
          "AutoConfig.study", "AutoConfig.store", "AutoConfig.output")


@wires(*DATA_AND_RUNTIME, *SEARCH)
def test_auto_options_reach_the_ranking_the_trials_and_the_pruner(tmp_path, cli, spies):
    import optuna

    data = make_class_folders(tmp_path / "data", {"a": 9, "b": 9, "c": 9, "d": 9})
    result = cli("auto", "--data", str(data), "--backbones", "test_efficientnet,test_vit", "--random-init",
                 "--probe-top", "1", "--finetune-top", "1", "--freezes", "top:1", "--lr-min", "2e-4", "--lr-max",
                 "4e-4", "--max-epochs", "2", "--min-epochs", "2", "--reduction-factor", "4", "--pruner", "hyperband",
                 "--max-trials", "2", "--study", "wired", "--store", str(tmp_path / "s.sqlite"), "--output",
                 str(tmp_path / "o"), "--seed", "3", "--per-class", "5", "--classes", "a,b,c", "--num-classes", "3",
                 "--split", "0.6,0.2,0.2", "--val-per-class", "2", "--test-per-class", "2", "--device", "cpu",
                 "--precision", "fp32", "--batch-size", "4", "--workers", "0", "--no-cache", "--budget", "3h")
    assert result.returncode == 0, result.stderr
    shared = {"data": str(data), "seed": 3, "per_class": 5, "classes": ["a", "b", "c"], "num_classes": 3,
              "ratios": (0.6, 0.2, 0.2), "val_per_class": 2, "test_per_class": 2, "device": "cpu",
              "precision": "fp32", "batch_size": 4, "num_workers": 0, "random_init": True}
    scoring = [c for c in spies["rank"] if not c.probes]
    probing = [c for c in spies["rank"] if c.probes]
    for config in spies["rank"]:
        assert {k: getattr(config, k) for k in shared} == shared and config.cache is False
    assert [c.backbones for c in scoring] == [["test_efficientnet"], ["test_vit"]]
    trail = json.loads((tmp_path / "o" / "trail.json").read_text())
    best = trail["candidates"][0]
    assert len(probing) == 1 and probing[0].backbones == [best["backbone"]] and probing[0].probes
    assert trail["probes"][0]["layer"] == best["layer"]
    assert len(spies["finetune"]) == 2  # --max-trials
    for config in spies["finetune"]:
        assert {k: getattr(config, k) for k in shared} == shared
        assert config.backbone == best["backbone"] and config.freeze == "top:1"
        assert 2e-4 <= config.lr <= 4e-4 and config.epochs == 2
        assert str(tmp_path / "o" / "trials") in config.output
    assert spies["pruner"][0] == ("HyperbandPruner", {"min_resource": 2, "max_resource": 2, "reduction_factor": 4})
    study = optuna.load_study(study_name="wired", storage=f"sqlite:///{tmp_path / 's.sqlite'}")
    assert len(study.trials) == 2 and (tmp_path / "o" / "winner").is_dir()


@wires("AutoConfig.budget", "AutoConfig.folds", "AutoConfig.fold", "AutoConfig.compile")
def test_auto_budget_compile_and_refused_folds_reach_the_run(tmp_path, monkeypatch):
    """The budget is what the run counts down from (parsed: 1h2m is 3720 s); folds are
    refused (auto selects on a validation split); compile reaches the ranking."""
    from transferlab.auto import budget as budget_module
    from transferlab.auto.config import AutoConfig
    from transferlab.errors import UserError

    for bad in ({"folds": 3}, {"fold": 1}):
        with pytest.raises(UserError, match="no --folds"):
            AutoConfig(**bad)
    seen = {}

    class Stop(Exception):
        pass

    def run_rank(config, *args, **kwargs):
        seen["compile"] = config.compile
        raise Stop

    from transferlab.rank import run as rank_run

    monkeypatch.setattr(rank_run, "run_rank", run_rank)
    started = []
    real_init = budget_module.Budget.__init__
    monkeypatch.setattr(budget_module.Budget, "__init__",
                        lambda self, seconds, clock=None: started.append(seconds) or real_init(self, seconds))
    from transferlab.auto.run import run_auto

    data = make_class_folders(tmp_path / "data", {"a": 3, "b": 3})
    with pytest.raises(Stop):
        run_auto(AutoConfig(data=str(data), budget="1h2m", compile=True, backbones=["test_efficientnet"],
                            store=str(tmp_path / "s.sqlite"), output=str(tmp_path / "o")))
    assert started == [3720.0] and seen["compile"] is True
