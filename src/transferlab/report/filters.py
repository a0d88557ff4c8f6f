"""What a backbone's first and last convolutions look like: their filters and their activation maps.

The first convolution's kernels are drawn as RGB patches; the last one's, when
they are 1x1 (as in EfficientNet), are meaningless as pictures, so both layers
also show the maps they produce for one test image. A run that saved a model is
drawn from that model (what fine-tuning made of the filters), any other from the
backbone it started from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .plots import new_figure

MAX_FILTERS = 32
MAX_MAPS = 16


def first_and_last_conv(model: nn.Module) -> tuple[tuple[str, nn.Conv2d], tuple[str, nn.Conv2d]] | None:
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return (convs[0], convs[-1]) if convs else None


def _normalise(array: np.ndarray) -> np.ndarray:
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def image_grid(images: list[np.ndarray], title: str, cell: float, cmap: str):
    """Images in rows of up to 8, axes off; RGB images keep their colours, others take ``cmap``."""
    count = len(images)
    cols = min(8, count)
    rows = -(-count // cols)
    figure, axes = new_figure(cols * cell, rows * cell + 0.4, ncols=cols, nrows=rows)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            image = images[index]
            ax.imshow(image, cmap=None if image.ndim == 3 else cmap, interpolation="nearest")
    figure.suptitle(title, fontsize=9)
    return figure


def filters_figure(conv: nn.Conv2d, title: str):
    """One patch per output filter: RGB when the layer reads 3 channels, else the mean over inputs."""
    weights = conv.weight.detach().float().cpu().numpy()[:MAX_FILTERS]
    patches = [np.transpose(_normalise(k), (1, 2, 0)) if k.shape[0] == 3 else _normalise(k.mean(0)) for k in weights]
    return image_grid(patches, title, 0.9, "viridis")


def activation_maps(model: nn.Module, conv: nn.Conv2d, image: torch.Tensor) -> np.ndarray:
    """The layer's output maps for one preprocessed image, strongest first."""
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
    try:
        with torch.inference_mode():
            model(image.unsqueeze(0))
    finally:
        handle.remove()
    maps = captured[0][0].float().cpu().numpy()
    order = np.argsort(-maps.reshape(len(maps), -1).mean(1))
    return maps[order[:MAX_MAPS]]


def maps_figure(maps: np.ndarray, title: str):
    return image_grid(list(maps), title, 1.1, "magma")


def network_figures(model: nn.Module, name: str, transform, image_path, source: str) -> list[tuple[str, object]]:
    """(caption, figure) pairs for ``model``'s first and last convolutions; ``source`` names the weights drawn;
    ``image_path`` (a file or a ``MemoryImage``, or None) is the image whose activation maps are drawn."""
    from ..data.memory import MemoryImage
    from .pictures import picture_tensor

    if isinstance(image_path, str):
        image_path = Path(image_path)
    found = first_and_last_conv(model)
    if found is None:
        return []
    (first_name, first), (last_name, last) = found
    k = "x".join(map(str, first.kernel_size))
    figures = [(f"{source}: first convolution {first_name}: {first.out_channels} filters {k}",
                filters_figure(first, f"{name}: {first_name} filters"))]
    if max(last.kernel_size) > 1:
        figures.append((f"{source}: last convolution {last_name}: filters (mean over input channels)",
                        filters_figure(last, f"{name}: {last_name} filters")))
    if isinstance(image_path, MemoryImage) or (image_path is not None and Path(image_path).is_file()):
        image = transform(picture_tensor(image_path, getattr(transform, "decode_min_size", None)))
        image = image.to(next(model.parameters()).device)
        for conv_name, conv in ((first_name, first), (last_name, last)):
            maps = activation_maps(model, conv, image)
            figures.append((f"{source}: activation maps of {conv_name} for {image_path.name} "
                            f"(strongest {len(maps)})",
                            maps_figure(maps, f"{name}: {conv_name} on {image_path.name}")))
    return figures


def backbone_figures(config: dict, image_path: Path | None) -> list[tuple[str, object]]:
    """The figures of the backbone a run config starts from (pretrained, or its random initialisation)."""
    from ..backbones import load_backbone

    backbone = load_backbone(config["backbone"], weights=config.get("weights"),
                             random_init=bool(config.get("random_init")), seed=int(config.get("seed") or 0),
                             image_size=config.get("image_size"))
    source = "random initial weights" if config.get("random_init") else "pretrained weights"
    return network_figures(backbone.model, backbone.timm_name, backbone.eval_transform(), image_path, source)


def bundle_figures(bundle, image_path: Path | None, source: str) -> list[tuple[str, object]]:
    """The figures of a run's saved model: the weights its training ended with."""
    return network_figures(bundle.net, bundle.meta["backbone"]["timm_name"], bundle.transform(), image_path, source)


def run_figures(record, models, image_path: Path | None) -> tuple[str, list[tuple[str, object]]]:
    """(whose weights, figures) for a run: its saved model's when it saved one (what training made of the
    filters), else the backbone's it started from. ``models`` is the report's ``SavedModels``."""
    from .bundles import model_path

    if model_path(record) is not None:
        trained = "trained" if record.kind == "scratch" else "fine-tuned"
        source = f"{trained} weights of run {record.id}"
        return source, bundle_figures(models.get(record), image_path, source)
    figures = backbone_figures(record.config, image_path)
    return ("random initial weights" if record.config.get("random_init") else "pretrained weights"), figures
