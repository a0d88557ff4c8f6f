"""A saved model in one object: ``Predictor.load(folder).predict(image)`` from a notebook or a script.

It is the ``transferlab predict`` command as a Python object: the same bundle loader, the same
preprocessing (the bundle's own image size, crop and normalisation) and the engine's ``predict``.
Images may be files, PIL images or numpy arrays (H x W x 3 uint8, RGB); arrays and PIL images are
held in memory as the data path's ``MemoryImage`` records, so they take the very route files take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data.loading import ImageFiles
from .data.memory import MemoryImage
from .engine.runtime import Runtime, resolve_runtime
from .errors import UserError
from .finetune.bundle import Bundle, load_bundle
from .finetune.use import check_multi_label_views, class_probabilities
from .tta import check_views

IN_MEMORY = Path("<in-memory image>")


@dataclass(frozen=True)
class Prediction:
    """One image's classification: its top class, that class's probability, the top k, and every class's."""

    label: str
    probability: float
    top: list[tuple[str, float]]  # the k most probable classes, most probable first
    probabilities: dict[str, float]  # every class the model knows, in the model's class order
    labels: list[str] = field(default_factory=list)  # a multi-label model: every label over its threshold

    def __str__(self) -> str:
        return ", ".join(f"{label} {p:.3f}" for label, p in self.top)


class Predictor:
    """A fine-tuned model folder (``transferlab finetune``'s output) ready to classify images::

        from transferlab import Predictor
        model = Predictor.load("ants-bees")                 # the folder finetune saved
        print(model.predict("val/bees/1032546534_06907fe3b3.jpg"))   # bees 0.675, ants 0.325
    """

    def __init__(self, bundle: Bundle, runtime: Runtime, top_k: int = 3, batch_size: int = 32, tta: int = 1):
        self.tta = check_views(tta)
        self.bundle = bundle
        check_multi_label_views(bundle, self.tta)
        self.runtime = runtime
        self.top_k = max(1, min(int(top_k), len(bundle.classes)))
        self.batch_size = batch_size
        runtime.prepare(bundle.model)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", precision: str = "auto", top_k: int = 3,
             batch_size: int = 32, tta: int = 1) -> "Predictor":
        """The model saved in folder ``path``, on ``device`` (``auto``: a GPU where there is one); ``tta``: views
        whose probabilities are averaged (test-time augmentation; 1: off). A calibrated model's temperature is
        applied."""
        return cls(load_bundle(path), resolve_runtime(device, precision), top_k, batch_size, tta)

    @property
    def classes(self) -> list[str]:
        return list(self.bundle.classes)

    def predict(self, image: Any) -> Prediction:
        """Classify one image: a file path, a PIL image, or an H x W x 3 (or H x W) uint8 numpy array."""
        (prediction,) = self.predict_batch([image])
        if prediction is None:
            raise UserError(f"cannot read the image {image}")
        return prediction

    def predict_batch(self, images: Sequence[Any]) -> list[Prediction | None]:
        """Classify several images, in batches; an unreadable file gives None in its place."""
        items = [_image_item(image, i) for i, image in enumerate(images)]
        return [None if p is None else self._prediction(p)
                for p in class_probabilities(self.bundle, items, self.batch_size, self.runtime, self.tta)]

    def gradcam(self, image: Any, label: str | int | None = None) -> np.ndarray:
        """Grad-CAM heat map (the model's input height x width, values in [0, 1]) of the evidence for ``label``
        (a class name or index; default: the predicted class) in one image, as ``predict --gradcam`` draws it."""
        from .finetune.gradcam import grad_cam

        _, tensor = ImageFiles([_image_item(image, 0)], self.bundle.transform())[0]
        if tensor is None:
            raise UserError(f"cannot read the image {image}")
        if label is None:
            label = self.predict(image).label
        if isinstance(label, str):
            if label not in self.bundle.classes:
                raise UserError(f"{label!r} is not a class of this model: {', '.join(self.bundle.classes)}")
            label = self.bundle.classes.index(label)
        if not 0 <= int(label) < len(self.bundle.classes):
            raise UserError(f"class index {label} is outside 0..{len(self.bundle.classes) - 1}")
        device = next(self.bundle.net.parameters()).device
        return grad_cam(self.bundle.net, tensor.to(device), int(label))

    def _prediction(self, probabilities) -> Prediction:
        values = [float(p) for p in probabilities]
        order = sorted(range(len(values)), key=lambda i: -values[i])[: self.top_k]
        top = [(self.bundle.classes[i], values[i]) for i in order]
        threshold = self.bundle.threshold
        labels = [] if threshold is None else [self.bundle.classes[i] for i in sorted(range(len(values)),
                                                                                    key=lambda i: -values[i])
                                               if values[i] >= threshold]
        return Prediction(top[0][0], top[0][1], top, dict(zip(self.bundle.classes, values)), labels)


def _image_item(image: Any, index: int) -> Path | MemoryImage:
    """A file path as it is; a PIL image or a numpy array as an in-memory RGB record."""
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise UserError(f"no image file at {image}")
        return path
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise UserError(f"an image must be a file path, a PIL image or a numpy array, not {type(image).__name__}")
    if image.dtype != np.uint8:
        raise UserError(f"a numpy image must be uint8 (0-255), not {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise UserError(f"a numpy image must be H x W x 3 (RGB) or H x W, not {'x'.join(map(str, image.shape))}")
    planar = np.ascontiguousarray(image[..., :3].transpose(2, 0, 1))
    return MemoryImage(IN_MEMORY, index, int(image.shape[0]), int(image.shape[1]), planar.tobytes())
