"""Where a saved model goes wrong: its test images scored again, ranked by loss and by confidence of the mistake.

A stored result keeps each test image's true and predicted class only; the
probabilities come from the run's saved bundle, run once more over (at most
``MAX_SCORED`` of) the test images, the stored mistakes first. From those scores:
fastai's top losses (cross-entropy of the true class, highest first) and the most
confident mistakes (wrong, ranked by the predicted class's probability), each with
a Grad-CAM heat map of the evidence the model used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

MAX_SCORED = 256  # test images scored again per report: bounded time on a large test set
TOP_N = 8
BATCH = 32


@dataclass(frozen=True)
class ScoredImage:
    """One test image as the bundle sees it now."""

    path: str
    true: str
    predicted: str
    probability: float  # of the predicted class
    true_probability: float
    loss: float  # cross-entropy of the true class

    @property
    def wrong(self) -> bool:
        return self.predicted != self.true


def images_to_score(predictions: list[dict], classes: list[str], limit: int = MAX_SCORED) -> list[dict]:
    """Stored test predictions whose file is still there and whose class the model knows, mistakes first."""
    from .pictures import find_picture

    usable = [p for p in predictions if p.get("true") in classes and find_picture(p.get("path", "")) is not None]
    wrong = [p for p in usable if p.get("predicted") != p.get("true")]
    right = [p for p in usable if p.get("predicted") == p.get("true")]
    return (wrong + right)[:limit]


def score_images(bundle, items: list[dict]) -> list[ScoredImage]:
    """Probabilities and losses of ``items`` (path, true) under ``bundle``; unreadable files are left out."""
    from ..data import image_batches
    from .pictures import find_picture

    from ..engine.loop import collect
    from ..engine.runtime import CPU

    index = {name: i for i, name in enumerate(bundle.classes)}
    targets = torch.tensor([index[item["true"]] for item in items], dtype=torch.long)
    device = str(next(bundle.model.parameters()).device)
    runtime = CPU if device == "cpu" else replace(CPU, device=device)
    batches = image_batches([find_picture(item["path"]) for item in items], bundle.transform(), BATCH, 0)
    found = collect(bundle.model, batches, runtime)
    if not found.indices:
        return []
    truth = targets[found.indices]
    losses = F.cross_entropy(found.outputs, truth, reduction="none")
    probabilities = found.outputs.softmax(dim=1)
    scored: list[ScoredImage] = []
    for row, i, target, loss in zip(probabilities, found.indices, truth, losses):
        predicted = int(row.argmax())
        scored.append(ScoredImage(items[i]["path"], items[i]["true"], bundle.classes[predicted],
                                  float(row[predicted]), float(row[int(target)]), float(loss)))
    return scored


def top_losses(scored: list[ScoredImage], n: int = TOP_N) -> list[ScoredImage]:
    """The ``n`` images with the highest loss, highest first."""
    return sorted(scored, key=lambda s: -s.loss)[:n]


def confident_mistakes(scored: list[ScoredImage], n: int = TOP_N) -> list[ScoredImage]:
    """The ``n`` wrong predictions made with the highest probability, most confident first."""
    return sorted((s for s in scored if s.wrong), key=lambda s: -s.probability)[:n]


def gradcam_image(bundle, path, class_name: str):
    """The image as the model sees it, with the Grad-CAM heat map of ``class_name`` over it (a PIL image); ``path``
    a file, a ``MemoryImage`` or a stored prediction's name of one (``test_batch.bin#17``)."""
    from ..finetune.gradcam import grad_cam, overlay
    from .pictures import find_picture, picture_tensor

    picture = find_picture(path) if isinstance(path, str) else path
    if picture is None:
        raise FileNotFoundError(f"{path} is not there any more")
    transform = bundle.transform()
    image = transform(picture_tensor(picture, transform.decode_min_size))
    device = next(bundle.net.parameters()).device
    heat = grad_cam(bundle.net, image.to(device), bundle.classes.index(class_name))
    pre = bundle.meta["preprocessing"]
    return overlay(image, heat, pre["mean"], pre["std"])


def gradcam_uri(bundle, path, class_name: str) -> str:
    from .gallery import thumbnail_uri

    return thumbnail_uri(gradcam_image(bundle, path, class_name))
