"""What a logged run keeps besides numbers: the saved model and the report's figures, read back from the store.

MLflow through ``MlflowClient`` (a SQLite store with its artifact folder in a temporary ``--log-dir``),
TensorBoard through ``EventAccumulator``. A fine-tune's model is logged as the bundle folder, and the
folder downloaded back from MLflow must load and predict as the saved one.
"""

from __future__ import annotations

import pytest
import torch

from test_finetune import tiny_config
from test_tracking import mlflow_runs, needs_mlflow, needs_tensorboard, tensorboard_events, tiny_probe
from transferlab.finetune import load_bundle, run_finetune
from transferlab.probing.run import probe_run_name, run_probe

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
PNG = b"\x89PNG\r\n\x1a\n"


def artifact_names(client, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


@needs_mlflow
def test_finetune_logs_the_saved_model_and_its_figures_to_mlflow(cli, class_folders, tmp_path):
    from mlflow.artifacts import download_artifacts

    logs = tmp_path / "ml"
    done = cli("finetune", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init", "--workers", "0",
               "--batch-size", "8", "--epochs", "2", "--freeze", "half", "-o", str(tmp_path / "model"),
               "--log", "mlflow", "--log-dir", str(logs))
    assert done.returncode == 0, done.stderr

    client, (run,) = mlflow_runs(logs, "finetune")
    run_id = run.info.run_id
    assert artifact_names(client, run_id, "model") == {"model/model.safetensors", "model/config.json",
                                                       "model/transferlab.json"}
    assert artifact_names(client, run_id, "figures") == {"figures/learning_curves.png", "figures/confusion_matrix.png"}
    local = download_artifacts(run_id=run_id, artifact_path="", dst_path=str(tmp_path / "back"),
                               tracking_uri=f"sqlite:///{logs / 'mlflow.db'}")
    back = tmp_path / "back"
    assert (back / "figures" / "learning_curves.png").read_bytes().startswith(PNG), local
    assert (back / "figures" / "confusion_matrix.png").read_bytes().startswith(PNG)
    saved, logged = load_bundle(tmp_path / "model"), load_bundle(back / "model")
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(logged.model(x), saved.model(x), rtol=0, atol=0)


@needs_tensorboard
@needs_mlflow
def test_a_probe_logs_its_figures_to_both_backends_and_no_model(class_folders, tmp_path):
    config = tiny_probe(class_folders, log=["tensorboard", "mlflow"], log_dir=str(tmp_path / "logs"))
    run_probe(config)

    client, (run,) = mlflow_runs(tmp_path / "logs", "probe")
    assert artifact_names(client, run.info.run_id) == {"figures"}
    assert artifact_names(client, run.info.run_id, "figures") == {"figures/learning_curves.png",
                                                                  "figures/confusion_matrix.png"}
    events = tensorboard_events(tmp_path / "logs" / "probe" / probe_run_name(config))
    assert set(events.Tags()["images"]) == {"figures/learning_curves", "figures/confusion_matrix"}
    image = events.Images("figures/confusion_matrix")[0]
    assert image.encoded_image_string.startswith(PNG) and image.width > 100


def test_a_run_without_log_draws_no_figures(class_folders, tmp_path, monkeypatch):
    """Figures cost seconds: they are drawn only for a tracker that keeps them."""
    import transferlab.report.run_figures as figures

    def refuse(*args):
        raise AssertionError("figures drawn without --log")

    monkeypatch.setattr(figures, "run_figures", refuse)
    run_finetune(tiny_config(class_folders, tmp_path / "m", epochs=1))
