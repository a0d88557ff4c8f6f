"""A backbone's layers plus pooling plus a new head, trainable with a frozen prefix.

The model holds the backbone's layer-view modules (not the ImageNet classifier),
so its state dict is exactly what a saved bundle needs. ``forward(x, start=k)``
runs from layer k on, which is how a cached frozen-prefix output is used.

Frozen layers are kept in inference mode: their BatchNorm running statistics do
not change during training (the trap Keras and PyTorch users keep hitting). With
``train_bn=False`` (the default for pretrained backbones) the BatchNorm layers of
trainable layers keep their ImageNet statistics too, while their scale and shift
still learn: re-estimating statistics from a few small batches of a new dataset
undoes what the head learned in the first stage (the TensorFlow tutorial's advice).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backbones import Backbone
from ..errors import UserError
from ..heads import mlp_layers, parse_hidden


def parse_head(spec: str) -> tuple[int, ...]:
    """``linear`` -> no hidden layers; ``mlp:512,256`` -> (512, 256)."""
    name, _, arg = spec.partition(":")
    if name == "linear" and not arg:
        return ()
    if name == "mlp":
        return parse_hidden(arg) if arg else (512, 256)
    raise UserError(f"unknown fine-tuning head {spec!r}: use linear or mlp:512,256")


class TransferModel(nn.Module):
    def __init__(self, layers: list[nn.Module], feature_shape: tuple[int, ...], num_classes: int,
                 head: str = "linear", dropout: float = 0.2, pooling: str = "avg"):
        super().__init__()
        if pooling not in ("avg", "flatten"):
            raise UserError(f"fine-tuning pooling must be avg or flatten, got {pooling!r}")
        self.layers = nn.ModuleList(layers)
        self.pooling = pooling
        in_dim = feature_shape[0] if pooling == "avg" else math.prod(feature_shape)
        self.feature_dim = in_dim
        self.head = mlp_layers(in_dim, parse_head(head), num_classes, dropout)
        self.frozen_layers = 0
        self.train_bn = True

    @classmethod
    def from_backbone(cls, backbone: Backbone, num_classes: int, head: str = "linear", dropout: float = 0.2,
                      pooling: str = "avg") -> "TransferModel":
        view = backbone.require_layer_view()
        return cls(view.modules, view.layers[-1].output_shape, num_classes, head, dropout, pooling)

    def features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        x = self.features(x, start)
        x = x.mean(dim=(2, 3)) if self.pooling == "avg" else x.flatten(1)
        return self.head(x)

    def freeze(self, n_layers: int) -> None:
        """Freeze the first ``n_layers`` layers (no gradients, inference-mode BatchNorm)."""
        self.frozen_layers = n_layers
        for i, layer in enumerate(self.layers):
            for p in layer.parameters():
                p.requires_grad_(i >= n_layers)
        self.train(self.training)

    def train(self, mode: bool = True) -> "TransferModel":
        super().train(mode)
        for layer in self.layers[: self.frozen_layers]:
            layer.eval()
        if not self.train_bn:
            for module in self.layers.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, frozen) parameter counts, as in a Keras ``model.summary()``."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return trainable, frozen
