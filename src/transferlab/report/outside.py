"""Predictions on outside images: a folder of new images classified by every saved model of a study.

Lab reports end by showing what the models say about photos they never saw. Each
fine-tuned run saved a bundle; this loads each one once, classifies the folder's
images, and gives one table row per image with every model's top class, plus the
top-3 probabilities of the best model drawn as bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bundles import model_path
from .records import RunRecord

MAX_MODELS = 8
MAX_IMAGES = 24
TOP_K = 3


@dataclass
class ModelPredictions:
    """One saved model's top-k per outside image (``None`` for an unreadable image)."""

    record: RunRecord
    top: dict[str, list[dict] | None]  # image path -> [{label, probability}, ...]


def saved_models(done: list[RunRecord]) -> list[RunRecord]:
    """Finished runs whose bundle is still on disk, best first (at most ``MAX_MODELS``)."""
    with_model = [r for r in done if model_path(r) is not None]
    return sorted(with_model, key=lambda r: -(r.accuracy or 0.0))[:MAX_MODELS]


def outside_predictions(done: list[RunRecord], folder: Path, load: Callable[[RunRecord], object] | None = None,
                        ) -> tuple[list[Path], list[ModelPredictions], list[str]]:
    """(images, each saved model's predictions on them, notes on models that could not be used).

    ``load`` gives a run's bundle (the report's shared ``SavedModels.get``); by default each is loaded here.
    """
    from ..finetune.use import image_files, predict_images

    images = image_files([folder])[:MAX_IMAGES]
    predictions, notes = [], []
    for record in saved_models(done):
        try:
            rows = predict_images(load(record) if load else record.result.model_path, images, top_k=TOP_K)
        except Exception as exc:  # one unloadable bundle must not sink the report
            notes.append(f"run {record.id}: its saved model could not be used ({type(exc).__name__}: {exc})")
            continue
        predictions.append(ModelPredictions(record, {row["image"]: row.get("top") for row in rows}))
    return images, predictions, notes


def model_column(prediction: ModelPredictions) -> str:
    return f"{prediction.record.label()} (run {prediction.record.id})"


def prediction_rows(images: list[Path], predictions: list[ModelPredictions]) -> list[dict]:
    """One row per image: the image name, then each model's ``top class (probability)``."""
    rows = []
    for image in images:
        row = {"image": image.name}
        for prediction in predictions:
            top = prediction.top.get(str(image))
            row[model_column(prediction)] = f"{top[0]['label']} ({top[0]['probability']:.2f})" if top else "unreadable"
        rows.append(row)
    return rows


def top_bars(image: Path, top: list[dict], title: str):
    """The image beside a horizontal bar chart of its top classes' probabilities, each bar's value at its end.

    The layout engine makes room for every label (long class names are wrapped, never drawn over the image or
    cut at the figure's edge)."""
    import textwrap

    import numpy as np

    from ..data import open_rgb
    from .plots import new_figure

    figure, axes = new_figure(6.4, 2.4, ncols=2)
    figure.set_layout_engine("constrained")
    picture, bars = axes[0]
    picture.imshow(np.asarray(open_rgb(image)))
    picture.set_axis_off()
    picture.set_title(textwrap.fill(image.name, 30), fontsize=8)
    labels = [textwrap.fill(t["label"], 22) for t in top][::-1]
    values = [t["probability"] for t in top][::-1]
    drawn = bars.barh(range(len(values)), values, color="#4c72b0")
    bars.bar_label(drawn, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=7)
    bars.set_yticks(range(len(labels)), labels, fontsize=7)
    bars.set_xlim(0, 1.18)  # room for the value of a bar at 1.0
    bars.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    bars.tick_params(axis="x", labelsize=7)
    bars.set_xlabel("probability", fontsize=8)
    bars.set_title(textwrap.fill(title, 40), fontsize=8)
    return figure
