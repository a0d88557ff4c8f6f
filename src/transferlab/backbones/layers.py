"""What transferlab calls a *layer*, defined once for every backbone.

A layer is one unit of the backbone's feature path (``forward_features``) in the
order it runs: the modules a timm model calls one after another, with plain
``nn.Sequential`` containers (stages) opened up. For EfficientNet-Lite0 that is
20 layers: stem conv, stem BN, the 16 inverted-residual blocks, head conv, head
BN. For ResNet-50: conv1, bn1, act1, maxpool and the 16 bottleneck blocks. For
VGG-16: every conv, ReLU and max-pool of ``features``.

The view is checked when it is built: running the layers one after another must
give exactly ``forward_features``. Models whose feature path is not such a
sequence (a module called twice, a branch) have no layer view; features from
the final pooled output still work for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class Layer:
    index: int
    name: str  # module path inside the timm model, e.g. "blocks.3.1"
    kind: str  # module class name
    parameters: int
    output_shape: tuple[int, ...]  # (C, H, W) at the backbone's input size


class LayerView:
    """The backbone's feature path as an ordered list of layers that can be run piecewise."""

    def __init__(self, names: list[str], modules: list[nn.Module], shapes: list[tuple[int, ...]]):
        self.modules = modules
        self.layers = [
            Layer(i, name, type(module).__name__, sum(p.numel() for p in module.parameters()), shape)
            for i, (name, module, shape) in enumerate(zip(names, modules, shapes))
        ]

    def __len__(self) -> int:
        return len(self.layers)

    def find(self, layer: str | int) -> Layer:
        """A layer by index (negative counts from the end) or by module name."""
        text = str(layer)
        if text.lstrip("-").isdigit():
            index = int(text)
            if -len(self.layers) <= index < len(self.layers):
                return self.layers[index]
        for candidate in self.layers:
            if candidate.name == text:
                return candidate
        raise UserError(
            f"unknown layer {layer!r}: use pre_logits, logits, an index from 0 to {len(self.layers) - 1} "
            "or a name that `transferlab layers` lists"
        )

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run layers ``start`` .. ``stop - 1`` on ``x``."""
        for module in self.modules[start:stop]:
            x = module(x)
        return x


def _opens_up(module: nn.Module) -> bool:
    """A plain nn.Sequential runs its children in order, so its children are layers too."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def build_layer_view(model: nn.Module, input_size: tuple[int, int, int]) -> LayerView | None:
    """Discover the layer sequence of ``model.forward_features`` with hooks, then verify it."""
    fired: list[tuple[str, nn.Module]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    calls: dict[str, int] = {}

    def candidates(prefix: str, parent: nn.Module):
        for child_name, child in parent.named_children():
            name = f"{prefix}{child_name}"
            if _opens_up(child):
                yield from candidates(f"{name}.", child)
            else:
                yield name, child

    for name, module in candidates("", model):

        def hook(mod, args, output, name=name):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                fired.append((name, mod))
                if isinstance(output, torch.Tensor):
                    shapes[name] = tuple(output.shape[1:])

        handles.append(module.register_forward_hook(hook))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, *input_size), generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model.forward_features(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not fired or any(count > 1 for count in calls.values()) or len(shapes) != len(fired):
        return None
    view = LayerView([n for n, _ in fired], [m for _, m in fired], [shapes[n] for n, _ in fired])
    model.eval()
    try:
        with torch.no_grad():
            got = view.run(x)
    except Exception:
        return None
    finally:
        model.train(was_training)
    if not isinstance(expected, torch.Tensor) or got.shape != expected.shape:
        return None
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return None
    return view
