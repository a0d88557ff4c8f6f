"""Top ImageNet classes of a few images: proves weights and preprocessing are right."""

from __future__ import annotations

from pathlib import Path

import torch
from timm.data import ImageNetInfo

from .backbones import DEFAULT_BACKBONE, load_backbone
from .data import UnreadableImage, decode_rgb
from .engine.loop import predict
from .engine.runtime import CPU
from .errors import UserError
from .pathkinds import wrong_kind


def predict_imagenet(images: list[str | Path], backbone: str = DEFAULT_BACKBONE, weights: str | None = None, top_k: int = 5) -> list[dict]:
    for image in images:  # before the backbone loads: a mistyped path costs no wait
        if not Path(image).is_file():
            raise wrong_kind(image, "image", "an image file")
    model = load_backbone(backbone, weights=weights)
    transform = model.eval_transform()
    info = ImageNetInfo()
    tensors = []
    for image in images:
        try:
            tensors.append(transform(decode_rgb(image, transform.decode_min_size)))
        except UnreadableImage:
            raise UserError(f"not a readable image: {image}") from None
    _, logits = list(predict(model.model, model.model, [torch.stack(tensors)], CPU, inputs_of=lambda x: x))[0]
    probabilities = logits.softmax(dim=1)
    top = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    return [
        {
            "image": str(image),
            "top": [
                {"label": info.index_to_description(int(i)), "probability": round(float(p), 4)}
                for p, i in zip(values, indices)
            ],
        }
        for image, values, indices in zip(images, top.values, top.indices)
    ]
