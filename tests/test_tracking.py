"""``--log tensorboard`` / ``--log mlflow``: what a run logs is read back with each tool's own reader.

TensorBoard event files through ``EventAccumulator``, MLflow stores through ``MlflowClient``;
every epoch's scalars must equal the result's history, the parameters the config's fields,
the final metrics the result's. Each backend's tests skip when its package is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from test_finetune import tiny_config
from transferlab.finetune import run_finetune
from transferlab.finetune.config import FinetuneConfig
from transferlab.finetune.run import config_id
from transferlab.probing.config import ProbeConfig
from transferlab.probing.run import probe_run_name, run_probe
from transferlab.tracking import mlflow_uri, open_tracker

needs_tensorboard = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed: pip install 'transferlab[tensorboard]'")
needs_mlflow = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mlflow") is None,
    reason="mlflow is not installed: pip install 'transferlab[mlflow]'")

# mlflow 3.17's SQL store with SQLAlchemy 2.1 (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

EPOCH_KEYS = ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def tensorboard_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def tensorboard_scalars(events, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def tensorboard_params(events) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                    for k, v in data.session_start_info.hparams.items()}
    return {}


def history_of(history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(h["epoch"], pytest.approx(h[key], rel=1e-6)) for h in history]


def mlflow_runs(log_dir: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{log_dir / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client, client.search_runs([found.experiment_id])


def mlflow_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def tiny_probe(data, **overrides) -> ProbeConfig:
    return ProbeConfig(**{"data": str(data), "backbone": "test_efficientnet", "random_init": True, "batch_size": 8,
                          "num_workers": 0, "head": "mlp:8", "head_epochs": 3, "head_patience": 50, **overrides})


# -- fine-tuning ---------------------------------------------------------------------------------------------------

@needs_tensorboard
def test_finetune_logs_each_epoch_the_params_and_final_metrics_to_tensorboard(class_folders, tmp_path):
    config = tiny_config(class_folders, tmp_path / "model", log=["tensorboard"], log_dir=str(tmp_path / "tb"))
    result = run_finetune(config)

    events = tensorboard_events(tmp_path / "tb" / "finetune" / "model")
    assert len(result.history) == 2
    for key in EPOCH_KEYS:
        assert tensorboard_scalars(events, key) == history_of(result.history, key), key
    assert tensorboard_scalars(events, "final/accuracy") == [(2, pytest.approx(result.accuracy, rel=1e-6))]
    assert tensorboard_scalars(events, "final/macro_f1") == [(2, pytest.approx(result.macro_f1, rel=1e-6))]
    low, high = result.interval()
    assert tensorboard_scalars(events, "final/accuracy_low")[0][1] == pytest.approx(low, rel=1e-6)
    assert tensorboard_scalars(events, "final/accuracy_high")[0][1] == pytest.approx(high, rel=1e-6)
    assert tensorboard_scalars(events, "final/training_seconds")[0][1] == pytest.approx(result.training_seconds,
                                                                                         rel=1e-6)
    params = tensorboard_params(events)
    assert params["backbone"] == "test_efficientnet"
    assert params["lr"] == pytest.approx(1e-3)
    assert params["epochs"] == 2
    assert params["freeze"] == "half"


@needs_tensorboard
def test_finetune_logs_the_recipes_values_for_the_training_sets_size(class_folders, tmp_path, weights):
    """Under 20 training images per class the default recipe trains with RandAugment and label smoothing 0.1:
    the logged parameters are the ones the run used, not those of the config before the data was split."""
    config = FinetuneConfig(data=str(class_folders), output=str(tmp_path / "model"), backbone="test_efficientnet",
                            weights=weights, batch_size=8, num_workers=0, epochs=1, log=["tensorboard"],
                            log_dir=str(tmp_path / "tb"))
    result = run_finetune(config)

    assert "under 20" in result.recipe
    params = tensorboard_params(tensorboard_events(tmp_path / "tb" / "finetune" / "model"))
    assert params["label_smoothing"] == pytest.approx(0.1)
    assert "randaugment" in params["augment"]
    assert params["freeze"] == "two-stage:first:25%"


@needs_mlflow
def test_finetune_logs_one_mlflow_run_with_params_epochs_and_final_metrics(class_folders, tmp_path):
    config = tiny_config(class_folders, tmp_path / "model", log=["mlflow"], log_dir=str(tmp_path / "ml"),
                         log_experiment="ants-vs-bees")
    result = run_finetune(config)

    client, runs = mlflow_runs(tmp_path / "ml", "ants-vs-bees")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "model"
    assert run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "test_efficientnet"
    assert float(run.data.params["lr"]) == pytest.approx(1e-3)
    assert run.data.params["epochs"] == "2"
    assert run.data.params["freeze"] == "half"
    for key in EPOCH_KEYS:
        assert mlflow_history(client, run.info.run_id, key) == history_of(result.history, key), key
    assert run.data.metrics["accuracy"] == pytest.approx(result.accuracy)
    assert run.data.metrics["macro_f1"] == pytest.approx(result.macro_f1)
    assert (run.data.metrics["accuracy_low"], run.data.metrics["accuracy_high"]) == pytest.approx(result.interval())
    assert run.data.metrics["test_seconds"] == pytest.approx(result.test_seconds)
    assert run.data.metrics["training_seconds"] == pytest.approx(result.training_seconds)


def test_logging_is_speed_only_it_does_not_change_the_run_identity(class_folders, tmp_path):
    plain = tiny_config(class_folders, tmp_path / "model")
    logged = tiny_config(class_folders, tmp_path / "model", log=["tensorboard", "mlflow"],
                         log_dir=str(tmp_path / "logs"), log_experiment="x")
    assert config_id(logged) == config_id(plain)
    assert probe_run_name(tiny_probe(class_folders, log=["mlflow"])) == probe_run_name(tiny_probe(class_folders))


# -- probing -----------------------------------------------------------------------------------------------------------

@needs_tensorboard
@needs_mlflow
def test_probe_logs_the_trained_heads_epochs_to_both_backends(class_folders, tmp_path):
    config = tiny_probe(class_folders, log=["tensorboard", "mlflow"], log_dir=str(tmp_path / "logs"))
    result = run_probe(config)
    assert len(result.history) == 3

    events = tensorboard_events(tmp_path / "logs" / "probe" / probe_run_name(config))
    client, runs = mlflow_runs(tmp_path / "logs", "probe")
    assert [r.info.run_name for r in runs] == [probe_run_name(config)]
    run_id = runs[0].info.run_id
    for key in EPOCH_KEYS:
        assert tensorboard_scalars(events, key) == history_of(result.history, key), key
        assert mlflow_history(client, run_id, key) == history_of(result.history, key), key
    assert tensorboard_scalars(events, "final/accuracy")[0][1] == pytest.approx(result.accuracy, rel=1e-6)
    assert runs[0].data.metrics["accuracy"] == pytest.approx(result.accuracy)
    assert runs[0].data.metrics["extraction_seconds"] == pytest.approx(result.extraction_seconds)
    assert runs[0].data.params["head"] == "mlp:8"
    assert tensorboard_params(events)["head"] == "mlp:8"


def test_only_the_main_process_logs(class_folders, tmp_path):
    config = tiny_probe(class_folders, log=["tensorboard", "mlflow"], log_dir=str(tmp_path / "logs"))
    with open_tracker(config, "probe", "r", is_main=False) as tracker:
        assert not tracker
    assert not (tmp_path / "logs").exists()


def test_mlflow_store_defaults_to_the_environment_then_a_local_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_uri(None) == (f"sqlite:///{tmp_path / 'mlflow.db'}", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_uri(None)[0] == "http://tracking.example:5000"
    assert mlflow_uri("sqlite:////elsewhere/x.db")[0] == "sqlite:////elsewhere/x.db"
    assert mlflow_uri(str(tmp_path / "logs"))[0] == f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}"


# -- studies and the command line --------------------------------------------------------------------------------

@needs_tensorboard
@needs_mlflow
def test_study_run_logs_one_run_per_planned_run_and_still_fills_the_store(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_image_folder(tmp_path / "data", per_class=6, size=24)
    study = write_study(tmp_path, f"""
        name: tiny
        data: {tmp_path / 'data'}
        backbones: [{TINY_BACKBONE}]
        settings: {{num_workers: 0, batch_size: 8, per_class: 3}}
        methods:
          - {{name: logreg, kind: probe, head: logreg}}
          - {{name: mlp, kind: probe, head: "mlp:8", head_epochs: 2}}
        """)
    store = tmp_path / "runs.sqlite"
    logs = tmp_path / "logs"
    done = cli("study", "run", str(study), "--store", str(store), "--log", "tensorboard,mlflow", "--log-dir", str(logs))
    assert done.returncode == 0, done.stderr + done.stdout

    from transferlab.study import RunStore, load_study, plan_study

    planned = {f"{r.method}/{r.run_id}": r for r in plan_study(load_study(study)).runs}
    assert len(planned) == 2
    client, runs = mlflow_runs(logs, "tiny")
    assert sorted(r.info.run_name for r in runs) == sorted(planned)
    with RunStore(str(store)) as stored:
        rows = {r.id: r for r in stored.runs()}
    assert {r.run_id for r in planned.values()} == set(rows)
    for run in runs:
        accuracy = rows[planned[run.info.run_name].run_id].accuracy
        assert run.data.metrics["accuracy"] == pytest.approx(accuracy)
        assert run.data.params["per_class"] == "3"
    for name, run in planned.items():
        events = tensorboard_events(logs / "tiny" / name)
        assert tensorboard_scalars(events, "final/accuracy")[0][1] == pytest.approx(rows[run.run_id].accuracy,
                                                                                     rel=1e-6)
        if run.method == "mlp":
            assert [step for step, _ in tensorboard_scalars(events, "val_loss")] == [1, 2]


def test_a_missing_package_is_one_error_line_with_the_pip_command(class_folders, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # find_spec: not installed
    done = cli("probe", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init", "--workers", "0",
               "--log", "tensorboard")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: --log tensorboard needs the tensorboard package: "
                                   "pip install 'transferlab[tensorboard]'")
    assert not (tmp_path / "runs").exists()


def test_an_unknown_backend_is_one_error_line(class_folders, cli):
    done = cli("finetune", "--data", str(class_folders), "--log", "tensorboard,neptune")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: unknown log backend 'neptune': use tensorboard, mlflow, wandb "
                                   "(comma-separated for several)")


@needs_mlflow
def test_cross_validation_logs_one_run_per_fold(class_folders, tmp_path, cli, monkeypatch):
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = cli("probe", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init", "--workers", "0",
               "--folds", "2", "--json", "--log", "mlflow", "--log-dir", str(tmp_path / "ml"))
    assert done.returncode == 0, done.stderr
    folds = json.loads(done.stdout)["folds"]
    client, runs = mlflow_runs(tmp_path / "ml", "probe")
    by_name = {r.info.run_name: r for r in runs}
    assert len(by_name) == 2
    for fold in (0, 1):
        (run,) = [r for name, r in by_name.items() if name.endswith(f"-fold{fold}")]
        assert run.data.params["fold"] == str(fold)
        assert run.data.metrics["accuracy"] == pytest.approx(folds[fold]["accuracy"])
