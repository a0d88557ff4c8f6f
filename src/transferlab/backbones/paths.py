"""Running a backbone from its k-th unit on: what the frozen-prefix cache needs.

A *path* writes ``forward_features`` followed by ``forward_head(pre_logits=True)``
as a list of steps, each tagged with the last freeze unit whose parameters it
uses. The frozen prefix of k units is then the leading steps tagged below k: run
once, cached, and training runs only the rest. A path is a small adapter per
model family, and it is checked against the model's own forward pass when it is
built: a family without an adapter, or one that does not match, simply has no
path, and fine-tuning then recomputes the frozen units every epoch (the same
result, slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .units import Unit, classifier_parameter_names


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[torch.Tensor], torch.Tensor]
    prefixes: tuple[str, ...]  # parameter-name prefixes of what it runs


class UnitPath:
    def __init__(self, steps: list[Step], units: list[Unit]):
        self.steps = steps
        unit_of = {name: unit.index for unit in units for name in unit.parameter_names}
        self.step_units: list[int] = []
        last = 0
        for step in steps:
            touched = [index for name, index in unit_of.items()
                       if any(name == p or name.startswith(p + ".") for p in step.prefixes)]
            last = max(touched) if touched else last
            self.step_units.append(last)

    def __len__(self) -> int:
        return len(self.steps)

    def prefix_steps(self, frozen_units: int) -> int:
        """How many leading steps use only the first ``frozen_units`` units (the part that can be cached)."""
        count = 0
        for unit in self.step_units:
            if unit >= frozen_units:
                break
            count += 1
        return count

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Steps ``start .. stop - 1`` on ``x`` (all of them: the pre-logits features)."""
        for step in self.steps[start:stop]:
            x = step.run(x)
        return x


def _modules(model: nn.Module, *patterns: str) -> list[Step]:
    """Steps for module paths in forward order; ``*`` expands the children of a container, in order."""
    steps = []
    names = dict(model.named_modules())
    for pattern in patterns:
        if "*" not in pattern:
            if pattern in names:
                steps.append(Step(pattern, names[pattern], (pattern,)))
            continue
        parent, _, rest = pattern.partition(".*")
        for child_name, child in names[parent].named_children():
            path = f"{parent}.{child_name}"
            if rest:
                steps.extend(_modules(model, path + rest))
            else:
                steps.append(Step(path, child, (path,)))
    return steps


def _convnext(model: nn.Module) -> list[Step]:
    steps = _modules(model, "stem")
    for i, _ in enumerate(model.stages):
        steps += _modules(model, f"stages.{i}.downsample", f"stages.{i}.blocks.*")
    return steps + _modules(model, "norm_pre")


def _vit(model: nn.Module) -> list[Step]:
    def embed(x: torch.Tensor) -> torch.Tensor:
        return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))

    embed_step = Step("embed", embed, ("patch_embed", "cls_token", "reg_token", "pos_embed", "norm_pre"))
    return [embed_step, *_modules(model, "blocks.*", "norm")]


ADAPTERS: dict[str, Callable[[nn.Module], list[Step]]] = {
    "EfficientNet": lambda m: _modules(m, "conv_stem", "bn1", "blocks.*.*", "conv_head", "bn2"),
    "MobileNetV3": lambda m: _modules(m, "conv_stem", "bn1", "blocks.*.*"),
    "ResNet": lambda m: _modules(m, "conv1", "bn1", "act1", "maxpool", "layer1.*", "layer2.*", "layer3.*", "layer4.*"),
    "VGG": lambda m: _modules(m, "features.*"),
    "ByobNet": lambda m: _modules(m, "stem", "stages.*.*", "final_conv"),
    "ConvNeXt": _convnext,
    "VisionTransformer": _vit,
    "SmallCNN": lambda m: _modules(m, "blocks.*"),
}


def build_path(model: nn.Module, units: list[Unit], input_size: tuple[int, int, int]) -> UnitPath | None:
    """The model's path, verified against ``forward_head(forward_features(x), pre_logits=True)``; None if none fits."""
    adapter = ADAPTERS.get(type(model).__name__)
    if adapter is None:
        return None
    try:
        steps = adapter(model)
    except (AttributeError, KeyError, TypeError):
        return None
    covered = tuple(p for step in steps for p in step.prefixes)
    classifier = classifier_parameter_names(model)
    rest = tuple(name for name, _ in model.named_parameters()
                 if name not in classifier and not any(name == p or name.startswith(p + ".") for p in covered))
    steps.append(Step("pre_logits", lambda x: model.forward_head(x, pre_logits=True), rest))
    path = UnitPath(steps, units)
    return path if _matches(model, path, input_size) else None


def _matches(model: nn.Module, path: UnitPath, input_size: tuple[int, int, int]) -> bool:
    was_training = model.training
    model.eval()
    x = torch.randn((2, *input_size), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            expected = model.forward_head(model.forward_features(x), pre_logits=True)
            got = path.run(x)
    except Exception:
        return False
    finally:
        model.train(was_training)
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
