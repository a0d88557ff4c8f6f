"""The Backbone record: a timm model travels with its weights' identity and its own preprocessing.

Preprocessing is derived from the model's pretrained config
(``timm.data.resolve_data_config``), never typed by the user, so the right
normalisation cannot be forgotten.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn

from ..errors import UserError
from ..storage import file_digest
from .state_fit import load_exactly
from .units import FeatureLayer, Unit, feature_layers, freeze_units, module_outputs, resolve_layer
from .names import DEFAULT_BACKBONE, FROM_SCRATCH, resolve_timm_name
from .resolution import data_arguments, model_arguments, resample_state_dict
from .weights import (
    cached_hub_file,
    find_weights,
    looks_like_lite_package,
    missing_weights_error,
    read_state_dict,
    rename_lite_state_dict,
)


def _ready(model: nn.Module) -> nn.Module:
    """Eval mode and channels_last weights: every backbone leaves here ready for CPU inference."""
    return model.eval().to(memory_format=torch.channels_last)


@dataclass
class Backbone:
    """A pretrained (or randomly initialised) timm model with what determines its outputs."""

    name: str  # as the user asked for it
    timm_name: str  # timm model name with pretrained tag
    model: nn.Module = field(repr=False)  # full ImageNet model, eval mode, channels_last
    weights_id: str  # "sha256:<hex>" of the weights file, or "random-init:<seed>"
    weights_source: str  # where the weights came from, for people
    image_size: int | None = None  # input resolution asked for; None: the weights' own

    @property
    def architecture(self) -> str:
        return self.timm_name.split(".", 1)[0]

    @property
    def pretrained(self) -> bool:
        return not self.weights_id.startswith("random-init")

    @cached_property
    def data_config(self) -> dict[str, Any]:
        """Input size, resize/crop, interpolation, mean and std of this model's weights."""
        config = resolve_data_config(args=data_arguments(self.image_size), model=self.model)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}

    def transform(self, training: bool = False, **augment: Any):
        """timm's PIL transform for this backbone (evaluation by default)."""
        config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.data_config.items()}
        return create_transform(**config, is_training=training, **augment)

    def eval_transform(self):
        """timm's evaluation transform done on uint8 tensors (the fast data path every loop uses)."""
        from ..data.transforms import TensorEvalTransform

        return TensorEvalTransform(self.data_config)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.data_config["input_size"])  # type: ignore[return-value]

    @property
    def feature_dim(self) -> int:
        """Dimension of the pooled ``pre_logits`` features (timm's ``head_hidden_size``: 4096 for VGG's fc7)."""
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def backbone_parameters(self) -> int:
        """Parameters without the ImageNet classifier, which transfer learning replaces."""
        classifier = self.model.get_classifier()
        head = sum(p.numel() for p in classifier.parameters()) if isinstance(classifier, nn.Module) else 0
        return sum(p.numel() for p in self.model.parameters()) - head

    @cached_property
    def units(self) -> list[Unit]:
        """Freeze units: timm's parameter groups, classifier excluded."""
        return freeze_units(self.model)

    @cached_property
    def feature_layers(self) -> list[FeatureLayer]:
        """Layers a probe can take features from (``forward_intermediates``), with their shapes."""
        return feature_layers(self.model, self.input_size)

    @cached_property
    def module_outputs(self) -> dict[str, tuple[int, ...]]:
        """Every module ``forward_features`` runs, with its output shape: the layers read with a forward hook."""
        return module_outputs(self.model, self.input_size)

    def find_feature_layer(self, layer: str | int) -> FeatureLayer:
        """A feature layer by index (negative counts from the end), by its feature_info name, or any module
        ``forward_features`` runs (VGG's pool layers, e.g. ``features.23``), read by a forward hook."""
        layers = self.feature_layers
        for candidate in layers:  # the usual case needs no dry run of every module
            if candidate.name == str(layer):
                return candidate
        return resolve_layer(layer, layers, self.module_outputs, self.timm_name)

    def identity(self) -> dict[str, Any]:
        """Everything about the backbone that determines its features (a cache key part)."""
        return {"timm_name": self.timm_name, "weights": self.weights_id, "data_config": self.data_config}


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | None = None,
    random_init: bool = False,
    seed: int = 0,
    image_size: int | None = None,
) -> Backbone:
    """Build a backbone with ImageNet weights found offline, or randomly initialised.

    ``image_size``: the input resolution (None: the weights' own); a fixed-size model
    (a ViT) is built for it, its position embeddings resampled from the weights'.
    """
    if random_init and weights:
        raise UserError("--weights and --random-init exclude each other: give one of them")
    timm_name = resolve_timm_name(name)
    size = model_arguments(timm_name, image_size)
    if random_init or name in FROM_SCRATCH:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = timm.create_model(timm_name, pretrained=False, **size)
        return Backbone(name, timm_name, _ready(model), f"random-init:{seed}", "random initialisation", image_size)

    source = find_weights(timm_name, weights)
    if source.kind == "download":
        model = _download_with_timm(timm_name, size)
        cached = cached_hub_file(timm_name)
        weights_id = f"sha256:{file_digest(cached)}" if cached else f"timm:{timm_name}"
        return Backbone(name, timm_name, _ready(model), weights_id, "timm download", image_size)

    assert source.path is not None
    if source.kind == "hub-cache":
        model = timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(source.path)},
                                  **size)
    else:
        model = timm.create_model(timm_name, pretrained=False, **size)
        state = read_state_dict(source.path)
        if looks_like_lite_package(state):
            state = rename_lite_state_dict(state, [len(stage) for stage in model.blocks])
        if size:
            state = resample_state_dict(model, state)
        _load_strict(model, state, source.description)
    return Backbone(name, timm_name, _ready(model), f"sha256:{file_digest(source.path)}", source.description,
                    image_size)


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    load_exactly(model, state, f"weights in {where}")


def _download_with_timm(timm_name: str, size: dict[str, Any]) -> nn.Module:
    """timm's own pretrained loading; any failure (no network, no file) becomes one clear line."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return timm.create_model(timm_name, pretrained=True, **size)
    except Exception:
        raise missing_weights_error(timm_name) from None
