"""On-disk feature cache: one small .npy file per image, keyed by what determines it.

The folder is named by a digest of the extractor's identity (backbone, weights,
layer, pooling, preprocessing, precision); the file by the digest of the image
file's content. Renaming or moving images keeps their features; changing a pixel
or a setting does not reuse them. Files are written atomically, so concurrent
runs and ranks can share one cache.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..storage import atomic_write_bytes, atomic_write_text, cache_root, text_digest


class FeatureCache:
    def __init__(self, identity: dict[str, Any], root: Path | None = None):
        canonical = json.dumps(identity, sort_keys=True)
        self.key = text_digest(canonical)
        self.folder = (root or cache_root() / "features") / self.key[:24]
        self.identity = identity
        meta = self.folder / "identity.json"
        if not meta.exists():
            atomic_write_text(meta, json.dumps(identity, indent=2, sort_keys=True))

    def _path(self, content_digest: str) -> Path:
        return self.folder / content_digest[:2] / f"{content_digest}.npy"

    def get(self, content_digest: str) -> np.ndarray | None:
        path = self._path(content_digest)
        try:
            return np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None  # absent, or damaged by something outside transferlab: recompute

    def put(self, content_digest: str, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(features), allow_pickle=False)
        atomic_write_bytes(self._path(content_digest), buffer.getvalue())
