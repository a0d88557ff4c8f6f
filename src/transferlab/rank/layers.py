"""Every feature layer of a backbone (and its ImageNet logits) from one forward pass, through the feature cache.

Ranking scores each backbone at several layers; running ``FeatureExtractor`` once per layer would decode
and run every image once per layer. ``LayerSetExtractor`` is a ``FeatureExtractor`` whose forward takes all
the asked layers with one ``forward_intermediates`` call (and the logits from its final features), pools
each, and returns them side by side; its extraction, batching and cache are the parent's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..backbones import Backbone
from ..errors import UserError
from ..features import FeatureExtractor, FeatureSet

RANK_POOLINGS = ("avg", "max")


@dataclass
class LayerBlock:
    """Where one layer's (or the logits') columns lie in the side-by-side feature matrix."""

    name: str
    start: int
    stop: int


class LayerSetExtractor(FeatureExtractor):
    """Features of several feature layers (pooled alike) and optionally the ImageNet logits, in one pass."""

    def __init__(self, backbone: Backbone, layers: list[str], pooling: str = "avg", logits: bool = False,
                 **options):
        if pooling not in RANK_POOLINGS:
            raise UserError(f"rank pools feature maps by {' or '.join(RANK_POOLINGS)}, got {pooling!r}")
        found = [backbone.find_feature_layer(layer) for layer in layers]
        if len({f.index for f in found}) < len(found):
            raise UserError(f"a layer is asked twice: {', '.join(layers)}")
        self.found = sorted(found, key=lambda f: f.index)
        self.logits = logits
        start, self.blocks = 0, []
        for layer in self.found:
            self.blocks.append(LayerBlock(layer.name, start, start + int(layer.shape[0])))
            start += int(layer.shape[0])
        if logits:
            self.blocks.append(LayerBlock("logits", start, start + int(backbone.model.num_classes)))
        super().__init__(backbone, layer=self.found[-1].name, pooling=pooling, **options)
        self._options = {"indices": [f.index for f in self.found], "intermediates_only": not logits}
        if not logits and "stop_early" in self._options_accepted():
            self._options["stop_early"] = True

    def _options_accepted(self):
        import inspect

        return inspect.signature(self.backbone.model.forward_intermediates).parameters

    def identity(self) -> dict:
        return {**super().identity(), "layer": [f.name for f in self.found], "logits": self.logits,
                "kind": "layer-set"}

    @property
    def dim(self) -> int:
        return self.blocks[-1].stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        out = model.forward_intermediates(x, **self._options)
        maps, final = (out, None) if not self.logits else (out[1], out[0])
        pool = (lambda t: t.mean(dim=(2, 3))) if self.pooling == "avg" else (lambda t: t.amax(dim=(2, 3)))
        parts = [pool(t) for t in maps]
        if final is not None:
            parts.append(model.forward_head(final))
        return torch.cat(parts, dim=1)

    def split(self, features: FeatureSet) -> dict[str, np.ndarray]:
        """The feature matrix of each layer (and ``logits``), by name."""
        return {b.name: features.features[:, b.start:b.stop] for b in self.blocks}
