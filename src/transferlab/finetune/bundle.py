"""A trained model saved as a bundle: weights in safetensors plus a JSON description.

``model.safetensors`` holds the fine-tuned layers and head; ``transferlab.json``
holds what is needed to rebuild and use them: the timm architecture, the
preprocessing, the class names, the head spec and the training summary.
Loading never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.data import create_transform

from ..backbones import small_cnn  # noqa: F401  (registers transferlab_small_cnn, which bundles may name)
from ..backbones.layers import build_layer_view
from ..errors import UserError
from ..storage import atomic_path, atomic_write_text
from .model import TransferModel

WEIGHTS_NAME = "model.safetensors"
META_NAME = "transferlab.json"
FORMAT = "transferlab-bundle/1"


@dataclass
class Bundle:
    model: TransferModel
    classes: list[str]
    meta: dict[str, Any]

    def transform(self):
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in self.meta["preprocessing"].items()}
        return create_transform(**config, is_training=False)


def save_bundle(folder: Path, model: TransferModel, meta: dict[str, Any]) -> None:
    """Weights first, description last: a folder with ``transferlab.json`` holds a whole bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    atomic_write_text(folder / META_NAME, json.dumps({"format": FORMAT, **meta}, indent=2, default=str))


def read_meta(folder: Path | str) -> dict[str, Any]:
    path = Path(folder).expanduser()
    meta_path = path / META_NAME if path.is_dir() else path
    if not meta_path.is_file():
        raise UserError(f"no transferlab model at {folder} (expected {META_NAME} in the folder)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{meta_path} is not a transferlab model description") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not a {FORMAT} bundle")
    return meta


def load_bundle(folder: Path | str) -> Bundle:
    """Rebuild the model from its description and load its weights (eval mode)."""
    folder = Path(folder).expanduser()
    meta = read_meta(folder)
    architecture = meta["backbone"]["timm_name"]
    base = timm.create_model(architecture, pretrained=False).to(memory_format=torch.channels_last)
    view = build_layer_view(base, tuple(meta["preprocessing"]["input_size"]))
    if view is None or len(view) != meta["layers"]:
        raise UserError(f"the installed timm builds {architecture} differently from the one that saved {folder}")
    head = meta["head"]
    model = TransferModel(view.modules, view.layers[-1].output_shape, len(meta["classes"]),
                          head["spec"], head["dropout"], head["pooling"])
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    except (RuntimeError, OSError) as exc:
        raise UserError(f"cannot load weights of {folder}: {str(exc).splitlines()[0][:200]}") from None
    return Bundle(model.eval(), list(meta["classes"]), meta)


def predict_tensor(bundle: Bundle, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities for a batch of preprocessed images."""
    with torch.inference_mode():
        return bundle.model(images).softmax(dim=1)
