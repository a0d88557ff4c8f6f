"""Features from a frozen backbone: the pooled final output or any layer, cached per image.

Extraction streams: images are decoded batch by batch and only the feature
matrix is kept; images whose features are cached are not decoded at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..backbones import Backbone, to_channels_last
from ..data import image_batches
from ..errors import UserError
from ..storage import file_digest
from .cache import FeatureCache

POOLINGS = ("avg", "max", "flatten")
SPECIAL_LAYERS = ("pre_logits", "logits")

ProgressHook = Callable[[int, int], None]  # (images done, images total)


@dataclass
class FeatureSet:
    """Features of the readable images among ``paths``, row i for ``paths[kept[i]]``."""

    features: np.ndarray
    kept: list[int]
    unreadable: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    computed: int = 0  # images run through the backbone
    from_cache: int = 0

    @property
    def images_per_second(self) -> float:
        n = self.computed + self.from_cache
        return n / self.seconds if self.seconds > 0 else float("inf")


class FeatureExtractor:
    """Turns images into feature vectors with a frozen backbone.

    ``layer``: ``pre_logits`` (the model's own pooled output, default), ``logits``
    (the 1000 ImageNet scores), or a layer index/name from ``transferlab layers``,
    whose map is reduced by ``pooling`` (``avg``, ``max`` or ``flatten``).
    """

    def __init__(
        self,
        backbone: Backbone,
        layer: str | int = "pre_logits",
        pooling: str = "avg",
        batch_size: int = 32,
        num_workers: int | None = None,
        cache: bool = True,
        cache_root: Path | None = None,
    ):
        if pooling not in POOLINGS:
            raise UserError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.layer = str(layer)
        self.pooling = pooling
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._stop = None
        if self.layer not in SPECIAL_LAYERS:
            found = backbone.require_layer_view().find(self.layer)
            self.layer = found.name
            self._stop = found.index + 1
        self.model = backbone.model
        self.cache = FeatureCache(self.identity(), cache_root) if cache else None

    def identity(self) -> dict:
        pooling = self.pooling if self._stop is not None else None
        return {**self.backbone.identity(), "layer": self.layer, "pooling": pooling, "precision": "float32"}

    @property
    def dim(self) -> int:
        if self.layer == "pre_logits":
            return self.backbone.feature_dim
        if self.layer == "logits":
            return int(self.backbone.model.num_classes)
        shape = self.backbone.require_layer_view().layers[self._stop - 1].output_shape
        return int(np.prod(shape)) if self.pooling == "flatten" else int(shape[0])

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Feature vectors (B, D) of a batch of preprocessed images."""
        x = to_channels_last(images)
        if self.layer == "pre_logits":
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if self.layer == "logits":
            return self.model(x)
        out = self.backbone.layer_view.run(x, 0, self._stop)
        if out.ndim == 4:
            if self.pooling == "avg":
                return out.mean(dim=(2, 3))
            if self.pooling == "max":
                return out.amax(dim=(2, 3))
        return out.flatten(1)

    def extract(self, paths: Sequence[Path], progress: ProgressHook | None = None) -> FeatureSet:
        """Features of ``paths`` (cached ones read, the rest computed and cached)."""
        start = time.perf_counter()
        total = len(paths)
        rows: list[np.ndarray | None] = [None] * total
        digests: list[str | None] = [None] * total
        missing: list[int] = []
        for i, path in enumerate(paths):
            try:
                digests[i] = file_digest(path)
            except OSError:
                missing.append(i)  # unreadable file: let the decoder report it
                continue
            cached = self.cache.get(digests[i]) if self.cache else None
            if cached is None:
                missing.append(i)
            else:
                rows[i] = cached
        from_cache = total - len(missing)
        done = from_cache
        if progress:
            progress(done, total)
        unreadable: list[int] = []
        transform = self.backbone.transform()
        for batch in image_batches([paths[i] for i in missing], transform, self.batch_size, self.num_workers):
            unreadable.extend(missing[j] for j in batch.unreadable)
            if batch.images is not None:
                features = self.forward(batch.images).float().numpy()
                for j, vector in zip(batch.indices, features):
                    i = missing[j]
                    rows[i] = vector
                    if self.cache and digests[i]:
                        self.cache.put(digests[i], vector)
            done += len(batch.indices) + len(batch.unreadable)
            if progress:
                progress(done, total)
        kept = [i for i in range(total) if rows[i] is not None]
        matrix = np.stack([rows[i] for i in kept]) if kept else np.zeros((0, self.dim), np.float32)
        return FeatureSet(
            features=matrix.astype(np.float32, copy=False),
            kept=kept,
            unreadable=[Path(paths[i]) for i in sorted(unreadable)],
            seconds=time.perf_counter() - start,
            computed=len(missing) - len(unreadable),
            from_cache=from_cache,
        )
