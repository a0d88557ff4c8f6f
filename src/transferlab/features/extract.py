"""Features from a frozen backbone: the pooled final output or any layer, cached per image.

Extraction streams: images are decoded batch by batch and only the feature
matrix is kept; images whose features are cached are not decoded at all.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..backbones import Backbone
from ..data import image_batches
from ..data.decode import fast_decoder_name
from ..engine.loop import predict
from ..engine.runtime import CPU, Runtime
from ..errors import UserError
from ..data.memory import content_digest
from ..data.packed import PackedImage, rank_positions, shard_of
from ..timing import Phases
from .cache import FeatureCache
from .pooling import pool_features

log = logging.getLogger(__name__)

POOLINGS = ("avg", "max", "flatten", "token")
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
    cache_seconds: float = 0.0  # looking images up in the feature cache and reading their features
    decode_seconds: float = 0.0  # waiting for decoded batches

    @property
    def forward_seconds(self) -> float:
        """The frozen forward pass (and writing its features to the cache): the rest of ``seconds``."""
        return self.seconds - self.cache_seconds - self.decode_seconds

    @property
    def images_per_second(self) -> float:
        n = self.computed + self.from_cache
        return n / self.seconds if self.seconds > 0 else float("inf")


class FeatureExtractor:
    """Turns images into feature vectors with a frozen backbone, through timm's own model interface.

    ``layer``: ``pre_logits`` (``forward_head(forward_features(x), pre_logits=True)``,
    the model's own pooled features, default), ``logits`` (the 1000 ImageNet scores),
    or a feature layer (index or module name, ``transferlab layers``) taken with
    ``forward_intermediates``, whose map is reduced by ``pooling``: ``avg``, ``max`` or
    ``flatten``; a ViT's token map is its patch tokens laid out as a grid, and
    ``token`` takes its class token instead.
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
        runtime: Runtime = CPU,
    ):
        if pooling not in POOLINGS:
            raise UserError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.layer = str(layer)
        self.pooling = pooling
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.runtime = runtime
        self._index: int | None = None
        self._options: dict = {}
        self._shape: tuple[int, ...] = ()
        self._hooked: torch.nn.Module | None = None  # a module outside feature_info, read by a forward hook
        if self.layer not in SPECIAL_LAYERS:
            found = backbone.find_feature_layer(self.layer)
            self.layer, self._index, self._shape = found.name, found.index, found.shape
            if found.index is None:
                self._hooked = backbone.model.get_submodule(found.name)
                self._hooked_dim = self._check_hooked_pooling()
            else:
                self._options = self._intermediate_options()
        self.model = runtime.prepare(backbone.model)
        self.transform = backbone.eval_transform()
        self.cache = FeatureCache(self.identity(), cache_root) if cache else None

    def _intermediate_options(self) -> dict:
        accepted = inspect.signature(self.backbone.model.forward_intermediates).parameters
        options: dict = {"indices": [self._index], "intermediates_only": True}
        if "stop_early" in accepted:
            options["stop_early"] = True
        if self.pooling == "token":
            if "return_prefix_tokens" not in accepted or not getattr(self.backbone.model, "num_prefix_tokens", 0):
                raise UserError(f"pooling 'token' takes a ViT's class token; {self.backbone.timm_name} has none: "
                                "use avg, max or flatten")
            options["return_prefix_tokens"] = True
        return options

    def _check_hooked_pooling(self) -> int:
        """The hooked module's vector size under ``pooling`` (a UserError where the pooling does not apply)."""
        prefix = int(getattr(self.backbone.model, "num_prefix_tokens", 0) or 0)
        blank = torch.zeros((1, *self._shape), device="meta")
        return int(pool_features(blank, self.pooling, prefix, self.backbone.timm_name).shape[1])

    def identity(self) -> dict:
        pooling = self.pooling if self.layer not in SPECIAL_LAYERS else None
        return {**self.backbone.identity(), "layer": self.layer, "pooling": pooling,
                "precision": {"fp32": "float32"}.get(self.runtime.precision, self.runtime.precision),
                "decoding": decoding_identity(self.transform)}

    @property
    def dim(self) -> int:
        if self.layer == "pre_logits":
            return self.backbone.feature_dim
        if self.layer == "logits":
            return int(self.backbone.model.num_classes)
        if self._hooked is not None:
            return self._hooked_dim
        shape = self._shape
        if self.pooling == "flatten":
            return int(np.prod(shape))
        return int(shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature vectors (B, D) of a batch of preprocessed images on the runtime's device."""
        model = self.model
        if self.layer == "pre_logits":
            return model.forward_head(model.forward_features(x), pre_logits=True)
        if self.layer == "logits":
            return model(x)
        if self._hooked is not None:
            return self._hooked_forward(x)
        out = model.forward_intermediates(x, **self._options)[0]
        if self.pooling == "token":
            return out[1][:, 0]
        if self.pooling == "avg":
            return out.mean(dim=(2, 3))
        if self.pooling == "max":
            return out.amax(dim=(2, 3))
        return out.flatten(1)

    def _hooked_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The hooked module's output pooled: ``forward_features`` runs until that module has run, no further."""
        captured: list[torch.Tensor] = []

        def stop(_module, _inputs, output):
            captured.append(output)
            raise _LayerReached

        handle = self._hooked.register_forward_hook(stop)
        try:
            self.model.forward_features(x)
        except _LayerReached:
            pass
        finally:
            handle.remove()
        prefix = int(getattr(self.backbone.model, "num_prefix_tokens", 0) or 0)
        return pool_features(captured[0], self.pooling, prefix, self.backbone.timm_name)

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Feature vectors of a CPU batch of preprocessed images, as float32 numpy."""
        return list(predict(self.model, self.forward, [images], self.runtime, inputs_of=lambda x: x))[0][1].numpy()

    def extract(self, paths: Sequence[Path], progress: ProgressHook | None = None) -> FeatureSet:
        """Features of ``paths`` (cached ones read, the rest computed and cached).

        Over several processes each extracts its contiguous slice of ``paths`` (tar-shard members: whole shards,
        each shard read by one process), reading and writing the one cache for its own images only, and every
        process gets all the features, in ``paths`` order: the features one process would have computed.
        """
        if self.runtime.world_size == 1:
            return self._extract(paths, progress)
        start = time.perf_counter()
        mine = rank_positions(paths, self.runtime.rank, self.runtime.world_size)
        if mine is None:
            mine = list(self.runtime.shard(len(paths)))
        else:
            shards = sorted({shard_of(paths[i]) for i in mine})
            log.info("rank %d of %d reads %d images from %d shard(s): %s", self.runtime.rank,
                     self.runtime.world_size, len(mine), len(shards), ", ".join(Path(s).name for s in shards))
        local = self._extract([paths[i] for i in mine], progress)
        features = self.runtime.gather_rows(torch.from_numpy(local.features)).numpy()
        parts = self.runtime.gather(([mine[i] for i in local.kept], local.unreadable, local.computed,
                                     local.from_cache))
        kept = [i for part in parts for i in part[0]]
        order = np.argsort(kept, kind="stable")  # back into ``paths`` order
        return FeatureSet(
            features=features[order],
            kept=[kept[i] for i in order],
            unreadable=[p for part in parts for p in part[1]],
            seconds=time.perf_counter() - start,
            computed=sum(part[2] for part in parts),
            from_cache=sum(part[3] for part in parts),
            cache_seconds=local.cache_seconds,  # this process's: the slices ran side by side
            decode_seconds=local.decode_seconds,
        )

    def _extract(self, paths: Sequence[Path], progress: ProgressHook | None) -> FeatureSet:
        start = time.perf_counter()
        total = len(paths)
        matrix = np.empty((total, self.dim), np.float32)  # filled in place: one copy of the features, ever
        filled = np.zeros(total, bool)
        digests: list[str | None] = [None] * total
        missing: list[int] = []
        for i, path in enumerate(paths):
            try:
                digests[i] = content_digest(path)
            except OSError:
                missing.append(i)  # unreadable file: let the decoder report it
                continue
            cached = self.cache.get(digests[i], (self.dim,)) if self.cache else None
            if cached is None:
                missing.append(i)
            else:
                matrix[i], filled[i] = cached, True
        from_cache = total - len(missing)
        cache_seconds = time.perf_counter() - start
        waits = Phases()
        done = from_cache
        if progress:
            progress(done, total)
        unreadable: list[int] = []
        batches = image_batches([paths[i] for i in missing], self.transform, self.batch_size, self.num_workers,
                                self.runtime.pin_memory, self.runtime.device)
        for batch, out in predict(self.model, self.forward, waits.waiting(batches, "train_decode"), self.runtime):
            unreadable.extend(missing[j] for j in batch.unreadable)
            if out is not None:
                for j, vector in zip(batch.indices, out.numpy()):
                    i = missing[j]
                    matrix[i], filled[i] = vector, True
                    if self.cache and digests[i]:
                        self.cache.put(digests[i], vector)
            done += len(batch.indices) + len(batch.unreadable)
            if progress:
                progress(done, total)
        kept = np.flatnonzero(filled).tolist()
        if len(kept) < total:
            matrix = matrix[filled]
        return FeatureSet(
            features=matrix,
            kept=kept,
            unreadable=[paths[i] if isinstance(paths[i], PackedImage) else Path(paths[i]) for i in sorted(unreadable)],
            seconds=time.perf_counter() - start,
            computed=len(missing) - len(unreadable),
            from_cache=from_cache,
            cache_seconds=cache_seconds,
            decode_seconds=waits.seconds.get("train_decode", 0.0),
        )


class _LayerReached(Exception):
    """Raised by the hook on a probed module: the layers after it need not run."""


def decoding_identity(transform) -> str:
    """How images become model inputs, for the cache key: decoders and resizers differ by a few uint8 levels."""
    return f"tensor/{fast_decoder_name()}/reduced>={transform.decode_min_size}"
