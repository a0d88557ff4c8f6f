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
    index: int  # position in forward_intermediates' list
    name: str  # module name from feature_info, e.g. "blocks.4" or "layer3"
    shape: tuple[int, ...]  # (C, H, W) at the backbone's input size


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
