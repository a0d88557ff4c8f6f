"""Small data made in the test for study and report tests: coloured-shape images, study files, records."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 220)}


def make_image_folder(root: Path, per_class: int = 12, size: int = 40) -> Path:
    """One sub-folder per class of ``per_class`` PNGs: a coloured disc on a grey background."""
    rng = random.Random(0)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grey = rng.randrange(60, 200)
            image = Image.new("RGB", (size, size), (grey, grey, grey))
            x, y = rng.randrange(2, size // 2), rng.randrange(2, size // 2)
            ImageDraw.Draw(image).ellipse([x, y, x + size // 3, y + size // 3], fill=colour)
            image.save(folder / f"{name}_{i:02d}.png")
    return root


def write_study(folder: Path, text: str, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


TINY_BACKBONE = "{name: test_efficientnet, random_init: true}"


CLASSES = ["ant", "bee", "wasp"]


def finetune_result(accuracy: float = 0.8, seed: int = 0, per_class: int = 2, image_dir: Path | None = None, **changes):
    """A real ``FinetuneResult`` of a two-stage run (stage 2 from epoch 4); predictions on files in ``image_dir``."""
    from dataclasses import asdict

    from transferlab.finetune.config import FinetuneConfig
    from transferlab.finetune.result import FinetuneResult

    history = [{"epoch": e, "stage": "head" if e <= 3 else "fine-tune", "lr": 1e-3, "train_loss": 1.0 / e,
                "train_accuracy": 0.5 + e / 20, "val_loss": 1.1 / e, "val_accuracy": 0.4 + e / 20, "seconds": 2.0}
               for e in range(1, 6)]
    predictions = []
    if image_dir is not None:
        paths = []
        for i, colour in enumerate(("red", "green", "blue")):
            path = image_dir / f"img{i}.png"
            Image.new("RGB", (30, 20), colour).save(path)
            paths.append(str(path))
        predictions = [{"path": paths[0], "true": "ant", "predicted": "ant"},
                       {"path": paths[1], "true": "bee", "predicted": "ant"},
                       {"path": str(image_dir / "gone.png"), "true": "wasp", "predicted": "bee"}]
    config = FinetuneConfig(data="/data", backbone="efficientnet_lite0", seed=seed, per_class=per_class)
    fields = dict(
        backbone="efficientnet_lite0", timm_name="tf_efficientnet_lite0", freeze="two-stage", head="linear",
        data="/data", evaluated_on="test", classes=CLASSES, train_images=9, val_images=3, test_images=6,
        accuracy=accuracy, macro_f1=accuracy, epochs_run=5, seconds_per_epoch=2.0, training_seconds=10.0,
        trainable_parameters=1000, frozen_parameters=9000, total_parameters=10000, backbone_layers=20,
        frozen_layers=0, feature_dim=1280, inference_ms_per_image=3.5, best_epoch=5, stage2_start_epoch=4,
        prefix_cache_used=True, model_path="/models/x", history=history,
        confusion_matrix=[[2, 0, 0], [1, 1, 0], [0, 0, 2]], predictions=predictions, config=asdict(config),
        runtime={"device": "cpu", "precision": "fp32"},
    )
    fields.update(changes)
    return FinetuneResult(**fields)


def probe_result(accuracy: float = 0.8, seed: int = 0, per_class: int = 2, **changes):
    """A real ``ProbeResult`` of a logistic-regression probe."""
    from dataclasses import asdict

    from transferlab.probing.config import ProbeConfig
    from transferlab.probing.result import ProbeResult

    config = ProbeConfig(data="/data", backbone="efficientnet_lite0", seed=seed, per_class=per_class)
    fields = dict(
        backbone="efficientnet_lite0", timm_name="tf_efficientnet_lite0", head="logreg", data="/data",
        evaluated_on="test", classes=CLASSES, train_images=9, val_images=3, test_images=6, accuracy=accuracy,
        macro_f1=accuracy, feature_dim=1280, inference_ms_per_image=2.0, weights="pretrained", layer="pre_logits",
        pooling="avg", backbone_layers=20, backbone_parameters=3_371_000, backbone_load_seconds=0.5,
        extraction_seconds=4.0, images_per_second=100.0, features_computed=18, features_from_cache=0,
        head_fit_seconds=0.25, confusion_matrix=[[2, 0, 0], [0, 0, 2], [0, 0, 2]], config=asdict(config),
        runtime={"device": "cpu", "precision": "fp32"},
    )
    fields.update(changes)
    return ProbeResult(**fields)
