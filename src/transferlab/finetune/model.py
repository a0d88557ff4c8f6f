"""The fine-tuned model: the timm model itself with a new classifier, trainable with a frozen prefix.

``TransferModel.net`` is the timm model (``reset_classifier(K)``), so
``net.state_dict()`` is a timm state dict: a bundle's weights load with
``timm.create_model(arch, num_classes=K)``. Features are what timm calls them,
``forward_head(forward_features(x), pre_logits=True)``, for the probe and for
fine-tuning alike (VGG keeps its pretrained fc6/fc7, MobileNetV3 its conv_head).
An ``mlp:...`` head replaces the classifier module in place.

Frozen units are kept in inference mode: their BatchNorm running statistics do
not change during training (the trap Keras and PyTorch users keep hitting). With
``train_bn=False`` (the default in stage 2 of two-stage) the BatchNorm layers of
trainable units keep their ImageNet statistics too, while their scale and shift
still learn: at stage 2's low rates, re-estimating statistics from a few small
batches of a new dataset undoes what the head learned in the first stage (the
TensorFlow tutorial's advice). Training at the full rate, they must follow the
weights (fine-tuning Flowers-17 with nothing frozen reached 0.41 validation accuracy
with fixed statistics where a plain loop reached 0.86).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..backbones import Backbone
from ..backbones.paths import UnitPath, build_path
from ..backbones.units import Unit, freeze_units
from ..errors import UserError
from ..features.pooling import pool_features
from ..heads.mlp import mlp_layers
from ..heads.spec import FINETUNE_HEADS, HeadSpec, parse_head


class TransferModel(nn.Module):
    def __init__(self, net: nn.Module, num_classes: int, head: HeadSpec | str = "linear", dropout: float = 0.2,
                 pooling: str = "pre_logits", input_size: tuple[int, int, int] | None = None):
        super().__init__()
        head = head if isinstance(head, HeadSpec) else parse_head(head, FINETUNE_HEADS)
        input_size = input_size or tuple(net.pretrained_cfg["input_size"])
        self.net = net
        self.feature_dim = install_head(net, num_classes, head, dropout, pooling, input_size)
        self.input_size = input_size
        self.units: list[Unit] = freeze_units(net)
        self._path: UnitPath | None | bool = False  # built on first use: loading a bundle needs none
        self.frozen_units = 0
        self.train_bn = True

    @classmethod
    def from_backbone(cls, backbone: Backbone, num_classes: int, head: HeadSpec | str = "linear",
                      dropout: float = 0.2, pooling: str = "pre_logits") -> "TransferModel":
        """A model built on ``backbone.model`` itself (no copy: the backbone is not used for anything else after)."""
        return cls(backbone.model, num_classes, head, dropout, pooling, backbone.input_size)

    @property
    def path(self) -> UnitPath | None:
        """The per-family path that runs from a unit on (None: no adapter fits this model)."""
        if self._path is False:
            self._path = build_path(self.net, self.units, self.input_size)
        return self._path  # type: ignore[return-value]

    @property
    def classifier(self) -> nn.Module:
        return self.net.get_classifier()

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits; ``start > 0``: ``x`` is the output of the path's first ``start`` steps (a cached prefix)."""
        if start == 0:
            return self.net(x)
        assert self.path is not None
        return self.classifier(self.path.run(x, start))

    def prefix(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """The output of the path's first ``steps`` steps (the input itself for 0)."""
        return self.path.run(x, 0, steps) if steps and self.path is not None else x

    def cacheable_steps(self) -> int:
        """Leading path steps that use frozen units only: their output is the same every epoch."""
        return self.path.prefix_steps(self.frozen_units) if self.path is not None else 0

    def freeze(self, n_units: int) -> None:
        """Freeze the first ``n_units`` units (no gradients, inference-mode BatchNorm and dropout)."""
        self.frozen_units = n_units
        frozen = {name for unit in self.units[:n_units] for name in unit.parameter_names}
        for name, p in self.net.named_parameters():
            p.requires_grad_(name not in frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "TransferModel":
        super().train(mode)
        if mode:
            for module in self.net.modules():
                params = list(module.parameters())
                if params and not any(p.requires_grad for p in params):
                    module.eval()
                elif not self.train_bn and isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def head_parameters(self) -> list[tuple[str, nn.Parameter]]:
        ids = {id(p) for p in self.classifier.parameters()}
        return [(n, p) for n, p in self.net.named_parameters() if id(p) in ids]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, frozen) parameter counts, as in a Keras ``model.summary()``."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return trainable, frozen


HEAD_INPUTS = ("pre_logits", "avg", "max", "flatten", "token")


def install_head(net: nn.Module, num_classes: int, head: HeadSpec, dropout: float, pooling: str,
                 input_size: tuple[int, int, int]) -> int:
    """Give ``net`` a new classifier for ``num_classes`` on the input ``pooling`` names; returns its dimension.

    ``pre_logits``: what timm feeds its own classifier (VGG's fc7, 4,096-d); ``avg``, ``max``, ``flatten``,
    ``token``: the last feature map (``forward_features``) pooled, flattened, or a ViT's class token, the
    modules between it and the classifier (VGG's fc6/fc7, MobileNetV3's conv_head) dropped, as Keras'
    ``include_top=False`` does. The net's own ``forward_head`` is then the pooling and the new classifier,
    so everything that goes through timm's split (the prefix cache's path, Grad-CAM) sees the same model.
    """
    if pooling not in HEAD_INPUTS:
        raise UserError(f"unknown fine-tuning pooling {pooling!r}: use one of {', '.join(HEAD_INPUTS)}")
    net.reset_classifier(num_classes)
    if pooling == "pre_logits":
        dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
        if head.kind == "mlp":
            replace_classifier(net, mlp_layers(dim, head.hidden, num_classes, dropout))
        return dim
    feature_map = drop_neck(net, input_size)
    prefix_tokens = int(getattr(net, "num_prefix_tokens", 0) or 0)
    net.forward_head = functools.partial(_pooled_head, net, pooling, prefix_tokens)
    dim = int(pool_features(feature_map, pooling, prefix_tokens, type(net).__name__)[0].numel())
    replace_classifier(net, nn.Sequential(nn.Flatten(1), *mlp_layers(dim, head.hidden, num_classes, dropout)))
    return dim


def _pooled_head(net: nn.Module, pooling: str, prefix_tokens: int, x: torch.Tensor,
                 pre_logits: bool = False) -> torch.Tensor:
    """The head input ``pooling`` names from the last feature map, then (unless ``pre_logits``) the classifier."""
    features = pool_features(x, pooling, prefix_tokens, type(net).__name__)
    return features if pre_logits else net.get_classifier()(features)


def drop_neck(net: nn.Module, input_size: tuple[int, int, int]) -> torch.Tensor:
    """Replace the modules between ``forward_features`` and the classifier (those ``forward_features`` never
    calls, classifier aside) by identities, as their weights would be trained for nothing and counted;
    returns the last feature map of one blank image."""
    called: set[int] = set()
    hooks = [m.register_forward_pre_hook(lambda m, _: called.add(id(m))) for m in net.modules()]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            feature_map = net.forward_features(torch.zeros((1, *input_size), device=next(net.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    classifier = net.get_classifier()
    keep = {id(m) for m in classifier.modules()} if isinstance(classifier, nn.Module) else set()
    dropped: list[str] = []
    for name, module in list(net.named_modules()):
        if not name or id(module) in called or any(name.startswith(d + ".") for d in dropped):
            continue
        if any(id(m) in keep for m in module.modules()) or next(module.parameters(), None) is None:
            continue
        parent_name, _, attribute = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, attribute, nn.Identity())
        dropped.append(name)
    return feature_map


def replace_classifier(net: nn.Module, module: nn.Module) -> None:
    """Put ``module`` where ``net.get_classifier()`` is, so timm's own forward_head calls it."""
    current = net.get_classifier()
    for name, candidate in net.named_modules():
        if candidate is current and name:
            parent_name, _, attribute = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, attribute, module)
            return
    raise UserError(f"{type(net).__name__} has no classifier module to replace: use --head linear")
