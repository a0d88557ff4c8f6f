"""Logging runs where users already look: TensorBoard event files, MLflow tracking stores, W&B runs.

One ``Sink`` interface, ``start(params)`` / ``epoch(record)`` / ``finish(metrics)`` /
``figures(figures)`` / ``model(folder)``, with one implementation per backend
(``torch.utils.tensorboard.SummaryWriter``, the ``mlflow`` client API, ``wandb``'s run API). A run's figures are the
report's (learning curves, confusion matrix); its model is the saved bundle folder (MLflow keeps it
as the run's ``model/`` artifacts). ``open_tracker(config, ...)`` gives the sinks a config's
``log`` option asks for, bundled as one ``Tracker``; the runs call it where they report
epochs (the engine's ``EpochHook``), so nothing is trained or evaluated twice. Each
package is an optional extra, imported only when asked for.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import UserError

BACKENDS = ("tensorboard", "mlflow", "wandb")
DEFAULT_TENSORBOARD_DIR = Path("runs") / "tensorboard"
MLFLOW_DATABASE = "mlflow.db"  # MLflow's own default store name (its file store is in maintenance mode)
_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def check_backends(names: Iterable[str]) -> list[str]:
    """The backends named, each known; else a UserError naming the choices."""
    names = [str(n).strip() for n in names if str(n).strip()]
    for name in names:
        if name not in BACKENDS:
            raise UserError(f"unknown log backend {name!r}: use {', '.join(BACKENDS)} (comma-separated for several)")
    return list(dict.fromkeys(names))


def require_backends(names: Iterable[str]) -> None:
    """A UserError with the pip line for the first backend whose package is not installed."""
    for name in names:
        if importlib.util.find_spec(_MODULES[name]) is None:
            raise UserError(f"--log {name} needs the {name} package: pip install 'transferlab[{name}]'")


def log_folders(backends: Iterable[str], log_dir: str | None) -> list[Path]:
    """The folders the backends write into: TensorBoard's event folder, MLflow's store folder (none for a
    tracking URI, which its client checks when it connects), W&B's run folder when ``log_dir`` names one."""
    folder = Path(log_dir) if log_dir and not _is_uri(log_dir) else None
    folders = []
    for name in backends:
        if name == "tensorboard":
            folders.append(folder or DEFAULT_TENSORBOARD_DIR)
        elif name == "wandb":
            folders.extend([folder] if folder else [])
        elif folder or not (log_dir or os.environ.get("MLFLOW_TRACKING_URI")):
            folders.append(folder or Path(MLFLOW_DATABASE).absolute().parent)
    return list(dict.fromkeys(folders))


def check_log_dir(backends: Iterable[str], log_dir: str | None) -> None:
    """A UserError when a folder the logs go into cannot be written (a file, read-only, no permission):
    before the run does any work, never a traceback from the logging package."""
    from .storage import folder_problem

    for folder in log_folders(backends, log_dir):
        reason = folder_problem(folder)
        if reason:
            raise UserError(f"cannot write the log folder {folder} (--log-dir): {reason}")


def scalars(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among ``values`` (booleans and words are parameters, not metrics)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def final_metrics(result: Any) -> dict[str, float]:
    """A run result's final figures: every number it holds (accuracy, macro F1, timings, counts) and the
    accuracy's 95% interval as ``accuracy_low`` / ``accuracy_high``."""
    metrics = scalars({f.name: getattr(result, f.name) for f in dataclasses.fields(result)})
    low, high = result.interval()
    return {**metrics, "accuracy_low": float(low), "accuracy_high": float(high)}


def param_text(value: Any) -> str | int | float | bool:
    """A config value as a parameter: numbers, words and flags as they are, the rest as JSON text."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str)


class Sink:
    """Where one run's parameters, epochs and final metrics go."""

    def start(self, params: dict[str, Any]) -> None: ...
    def epoch(self, record: dict) -> None: ...
    def finish(self, metrics: dict[str, float]) -> None: ...
    def figures(self, figures: dict[str, Any]) -> None: ...
    def model(self, folder: Path) -> None: ...
    def close(self, failed: bool = False) -> None: ...


def epoch_step(record: dict) -> int:
    return int(record["epoch"])


class TensorBoardSink(Sink):
    """Event files in ``folder``: one scalar per epoch for each number of the epoch's record (tag: its key),
    the parameters and final metrics in TensorBoard's HPARAMS tab, the final metrics also as ``final/NAME``."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard present but too old or broken
            raise UserError("--log tensorboard needs a working tensorboard package: "
                            "pip install 'transferlab[tensorboard]'") from None
        self.folder = Path(folder)
        try:
            self.writer = SummaryWriter(log_dir=str(self.folder))
        except OSError as exc:  # a folder made unwritable since check_log_dir
            raise UserError(f"cannot write the log folder {self.folder}: {(exc.strerror or str(exc)).lower()}"
                            ) from None
        self.params: dict[str, Any] = {}
        self.last_step = 0

    def start(self, params: dict[str, Any]) -> None:
        self.params = {k: param_text(v) for k, v in params.items()}
        self.writer.add_text("params", "\n".join(f"    {k}: {v}" for k, v in self.params.items()))

    def epoch(self, record: dict) -> None:
        self.last_step = epoch_step(record)
        for key, value in scalars(record).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, self.last_step)
        self.writer.flush()

    def finish(self, metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": v for k, v in metrics.items()}
        for summary in hparams(self.params, final):
            self.writer.file_writer.add_summary(summary, self.last_step)
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, self.last_step)

    def figures(self, figures: dict[str, Any]) -> None:
        for name, figure in figures.items():
            self.writer.add_figure(f"figures/{name}", figure, self.last_step, close=False)

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class MlflowSink(Sink):
    """One MLflow run in ``experiment`` of the store at ``uri``: the parameters, one metric per epoch for
    each number of the epoch's record (step: the epoch), the final metrics (step: the last epoch)."""

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 artifacts: str | None = None):
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("mlflow.store.db.utils", "alembic"):  # "creating the database tables": not the run's news
            logging.getLogger(name).setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (found.experiment_id if found is not None
                             else self.client.create_experiment(experiment, artifact_location=artifacts))
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        except Exception as exc:  # a bad URI, an unreachable server, a store without its database packages
            raise UserError(f"cannot log to the MLflow store {uri}: {str(exc).splitlines()[0] if str(exc) else exc}"
                            ) from None
        self.last_step = 0

    def start(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(param_text(v))) for k, v in params.items()])

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def epoch(self, record: dict) -> None:
        self.last_step = epoch_step(record)
        self._log({k: v for k, v in scalars(record).items() if k != "epoch"}, self.last_step)

    def finish(self, metrics: dict[str, float]) -> None:
        self._log(metrics, self.last_step)

    def figures(self, figures: dict[str, Any]) -> None:
        for name, figure in figures.items():
            self.client.log_figure(self.run_id, figure, f"figures/{name}.png")

    def model(self, folder: Path) -> None:
        """The saved bundle as the run's ``model/`` artifacts (``transferlab predict`` and timm load it back)."""
        from .finetune.bundle import BUNDLE_FILES

        for name in BUNDLE_FILES:
            self.client.log_artifact(self.run_id, str(folder / name), "model")

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class WandbSink(Sink):
    """One W&B run (project: the experiment, name: the run): the parameters as its config, one history row per
    epoch (step: the epoch), the final metrics as its summary, the figures as images (the step after the last
    epoch) and the saved model as a ``model`` artifact. Its files go under ``folder`` (default: ``$WANDB_DIR``,
    else the working folder); offline with ``WANDB_MODE=offline`` (``wandb sync`` uploads them later)."""

    def __init__(self, project: str, run_name: str, tags: dict[str, str], folder: Path | None):
        import wandb

        self.wandb = wandb
        self.name = run_name
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(project=project, name=run_name, dir=str(folder) if folder else None,
                                  tags=[f"{k}={v}"[:64] for k, v in tags.items()], reinit="create_new",
                                  settings=wandb.Settings(silent=True, console="off"))
        except Exception as exc:  # not logged in, no network, a bad project name
            raise UserError(f"cannot log to W&B: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                            ) from None
        self.last_step = 0

    def start(self, params: dict[str, Any]) -> None:
        self.run.config.update({k: param_text(v) for k, v in params.items()})

    def epoch(self, record: dict) -> None:
        self.last_step = epoch_step(record)
        self.run.log({k: v for k, v in scalars(record).items() if k != "epoch"}, step=self.last_step)

    def finish(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def figures(self, figures: dict[str, Any]) -> None:
        import io

        from PIL import Image

        from .report.plots import png_bytes

        images = {f"figures/{name}": self.wandb.Image(Image.open(io.BytesIO(png_bytes(figure))))
                  for name, figure in figures.items()}
        self.run.log(images, step=self.last_step + 1)  # a row of their own: W&B's rows are never re-opened

    def model(self, folder: Path) -> None:
        import re

        from .finetune.bundle import BUNDLE_FILES

        artifact = self.wandb.Artifact(re.sub(r"[^\w.-]", "-", f"model-{self.name}")[:128], type="model")
        for name in BUNDLE_FILES:
            artifact.add_file(str(folder / name), name=name)
        self.run.log_artifact(artifact)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def _is_uri(text: str) -> bool:
    return "://" in text or text.startswith("file:")


def mlflow_uri(log_dir: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact folder): ``log_dir`` as a URI, or a SQLite store ``log_dir/mlflow.db``; without
    it ``MLFLOW_TRACKING_URI``, else ``./mlflow.db`` (where ``mlflow ui`` run in this folder looks)."""
    if log_dir and _is_uri(log_dir):
        return log_dir, None
    if log_dir:
        folder = Path(log_dir).resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write the log folder {log_dir} (--log-dir): "
                            f"{(exc.strerror or str(exc)).lower()}") from None
        return f"sqlite:///{folder / MLFLOW_DATABASE}", (folder / "artifacts").as_uri()
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], None
    return f"sqlite:///{Path(MLFLOW_DATABASE).resolve()}", None


class Tracker(Sink):
    """The sinks of one run, called together; a context manager that closes them (as failed on an error)."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def start(self, params: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.start(params)

    def epoch(self, record: dict) -> None:
        for sink in self.sinks:
            sink.epoch(record)

    def finish(self, metrics: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.finish(metrics)

    def figures(self, figures: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.figures(figures)

    def model(self, folder: Path) -> None:
        for sink in self.sinks:
            sink.model(folder)

    def outputs(self, result: Any, run_name: str, model_folder: Path | None = None) -> None:
        """The final metrics, the run's figures and (a fine-tune's) saved model folder, to every sink."""
        if not self.sinks:
            return
        from .report.run_figures import run_figures

        self.finish(final_metrics(result))
        self.figures(run_figures(result, run_name))
        if model_folder is not None:
            self.model(Path(model_folder))

    def close(self, failed: bool = False) -> None:
        for sink in self.sinks:
            sink.close(failed)

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.close(failed=kind is not None)


def run_names(config: Any, command: str, default_run: str) -> tuple[str, str]:
    """(experiment, run name): the config's ``log_experiment`` (a study's name) else the command, and its
    ``log_run`` (a study's method/run id) else ``default_run``, with the fold when it is one."""
    experiment = config.log_experiment or command
    run = config.log_run or default_run
    if config.fold is not None and not config.log_run:
        run = f"{run}-fold{config.fold}"
    return experiment, run


def open_tracker(config: Any, command: str, default_run: str, is_main: bool = True, start: bool = True) -> Tracker:
    """The sinks ``config.log`` asks for (none off the main process, where only rank 0 logs), started with
    the config's fields as parameters (``start=False``: the caller starts it once its config is complete)."""
    backends = check_backends(config.log or [])
    if not backends or not is_main:
        return Tracker([])
    require_backends(backends)
    check_log_dir(backends, config.log_dir)
    experiment, run = run_names(config, command, default_run)
    sinks: list[Sink] = []
    try:
        for name in backends:
            if name == "tensorboard":
                folder = Path(config.log_dir) if config.log_dir and not _is_uri(config.log_dir) \
                    else DEFAULT_TENSORBOARD_DIR
                sinks.append(TensorBoardSink(folder / experiment / run))
            elif name == "wandb":
                folder = Path(config.log_dir) if config.log_dir and not _is_uri(config.log_dir) else None
                sinks.append(WandbSink(experiment, run, {"transferlab.command": command}, folder))
            else:
                uri, artifacts = mlflow_uri(config.log_dir)
                tags = {"transferlab.command": command, "transferlab.run": run}
                sinks.append(MlflowSink(uri, experiment, run, tags, artifacts))
    except BaseException:
        Tracker(sinks).close(failed=True)
        raise
    tracker = Tracker(sinks)
    if start:
        tracker.start(dataclasses.asdict(config))
    return tracker
