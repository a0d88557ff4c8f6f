"""A backbone's structure as timm defines it: freeze units and feature layers.

- **Units** are timm's own parameter groups (``group_matcher(coarse=False)``, the
  grouping its layer-wise learning-rate decay uses): the stem, each block, the
  neck joined to the last block. Freeze policies count units (``first:N``,
  ``top:K``); the classifier is never a unit.
- **Feature layers** are what ``forward_intermediates`` returns, one per entry of
  ``feature_info`` (stages for CNNs, blocks for ViTs): the layers a probe can take
  features from besides the pooled ``pre_logits`` output.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from timm.models import group_parameters
from torch import nn


@dataclass(frozen=True)
class Unit:
    index: int
    name: str  # the modules it holds, e.g. "blocks.3.1" or "conv_stem+bn1"
    parameter_names: tuple[str, ...]
    parameters: int  # number of scalars


@dataclass(frozen=True)
class FeatureLayer:
    index: int | None  # position in forward_intermediates' list; None: any other module, read by a forward hook
    name: str  # module name, from feature_info (e.g. "blocks.4", "layer3") or any other (VGG's "features.23")
    shape: tuple[int, ...]  # (C, H, W) at the backbone's input size ((N, D) for a ViT module's tokens)


def classifier_parameter_names(model: nn.Module) -> set[str]:
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Module):
        return set()
    ids = {id(p) for p in classifier.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def _unit_name(names: list[str]) -> str:
    """The modules a unit holds: per top-level module, the common path of its parameters' modules."""
    by_top: dict[str, list[list[str]]] = {}
    for name in names:
        parts = name.split(".")
        by_top.setdefault(parts[0], []).append(parts[:-1] or parts)
    return "+".join(".".join(os.path.commonprefix(paths)) or top for top, paths in by_top.items())


def freeze_units(model: nn.Module) -> list[Unit]:
    """The model's parameter groups in forward order, classifier excluded."""
    classifier = classifier_parameter_names(model)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    if hasattr(model, "group_matcher"):
        groups = group_parameters(model, model.group_matcher(coarse=False))
        ordered = [groups[k] for k in sorted(groups)]
    else:  # no grouping declared: each top-level child with parameters is a unit
        ordered = {}
        for name in sizes:
            ordered.setdefault(name.split(".")[0], []).append(name)
        ordered = list(ordered.values())
    units = []
    for names in ordered:
        kept = [n for n in names if n not in classifier]
        if kept:
            units.append(Unit(len(units), _unit_name(kept), tuple(kept), sum(sizes[n] for n in kept)))
    return units


def feature_layers(model: nn.Module, input_size: tuple[int, int, int]) -> list[FeatureLayer]:
    """The layers ``forward_intermediates`` returns, with their output shapes (one dry run)."""
    if not hasattr(model, "forward_intermediates"):
        return []
    info = getattr(model, "feature_info", None)
    names = [entry["module"] for entry in info] if info is not None else []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros((1, *input_size))
            outputs = model.forward_intermediates(x, intermediates_only=True)
    except Exception:  # a family whose intermediates need options we do not pass
        return []
    finally:
        model.train(was_training)
    return [FeatureLayer(i, names[i] if i < len(names) else f"stage{i}", tuple(out.shape[1:]))
            for i, out in enumerate(outputs)]


def module_outputs(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Every module ``forward_features`` runs, in call order, with the shape of its output (batch left out):
    the layers a probe can read with a forward hook besides ``feature_info``'s (one dry run on a blank image)."""
    names = {id(module): name for name, module in model.named_modules() if name}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(module, _inputs, output):
        name = names.get(id(module))
        if name and isinstance(output, torch.Tensor) and output.ndim >= 2 and name not in shapes:
            shapes[name] = tuple(output.shape[1:])

    hooks = [module.register_forward_hook(record) for module in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model.forward_features(torch.zeros((1, *input_size), device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return shapes


SPECIAL_LAYERS = ("pre_logits", "logits")
SHOWN_MODULES = 8  # module names an error about a layer names (closest first), beside feature_info's


def resolve_layer(layer: str | int, layers: list[FeatureLayer], modules: dict[str, tuple[int, ...]],
                  timm_name: str) -> FeatureLayer:
    """A feature layer by index (negative counts from the end), feature_info name, or any module name; else a
    UserError naming the valid ones (feature_info's, and the module names closest to what was typed)."""
    import difflib

    from ..errors import UserError

    text = str(layer)
    if layers and text.lstrip("-").isdigit() and -len(layers) <= int(text) < len(layers):
        return layers[int(text)]
    for candidate in layers:
        if candidate.name == text:
            return candidate
    if text in modules:
        return FeatureLayer(None, text, modules[text])
    indexed = ", ".join(f"{fl.index} ({fl.name})" for fl in layers) or "none in timm"
    close = difflib.get_close_matches(text, list(modules), n=SHOWN_MODULES, cutoff=0.5)
    shown = close or list(modules)[-SHOWN_MODULES:]
    raise UserError(f"unknown layer {text!r} of {timm_name}: use {', '.join(SPECIAL_LAYERS)}, a feature layer "
                    f"{indexed}, or any of its {len(modules)} modules, e.g. {', '.join(shown)} "
                    f"(`transferlab layers {timm_name.split('.')[0]}` lists the feature layers)")


@functools.lru_cache(maxsize=64)
def check_layer(name: str, layer: str, image_size: int | None = None) -> FeatureLayer | None:
    """``layer`` of backbone ``name`` checked against its structure alone (built on the meta device: no weights,
    milliseconds), so a misspelt layer fails before any data or weights load; None for pre_logits and logits."""
    if str(layer) in SPECIAL_LAYERS:
        return None
    import timm

    from .names import resolve_timm_name
    from .resolution import model_arguments

    timm_name = resolve_timm_name(name)
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, **model_arguments(timm_name, image_size))
        size = (3, image_size, image_size) if image_size else tuple(model.pretrained_cfg["input_size"])
        return resolve_layer(layer, feature_layers(model, size), module_outputs(model, size), timm_name)


def units_of(name: str, pooling: str = "pre_logits") -> list[Unit]:
    """The freeze units of backbone ``name`` with a fine-tuning head on ``pooling``, from its structure alone:
    built on the meta device (no weights, no memory, milliseconds), so a freeze point is checked before any
    data or weights load."""
    import timm

    from .names import resolve_timm_name

    with torch.device("meta"):
        model = timm.create_model(resolve_timm_name(name), pretrained=False)
        if pooling != "pre_logits":  # the head on the feature map drops the layers in between (VGG's fc6/fc7)
            from ..finetune.model import drop_neck

            drop_neck(model, tuple(model.pretrained_cfg["input_size"]))
    return freeze_units(model)
