"""On-disk feature cache: one small .npy file per image, keyed by what determines it.

The folder is named by a digest of the extractor's identity (backbone, weights,
layer, pooling, preprocessing, precision); the file by the digest of the image
file's content. Renaming or moving images keeps their features; changing a pixel
or a setting does not reuse them. Files are written atomically, so concurrent
runs and ranks can share one cache.

The cache is optional: when its folder cannot be written (read-only, full disk,
no permission) it warns once and the run goes on without writing to it.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..storage import WriteError, atomic_write_bytes, atomic_write_text, cache_root, text_digest

log = logging.getLogger(__name__)


class FeatureCache:
    def __init__(self, identity: dict[str, Any], root: Path | None = None):
        canonical = json.dumps(identity, sort_keys=True)
        self.key = text_digest(canonical)
        self.folder = (root or cache_root() / "features") / self.key[:24]
        self.identity = identity
        self.writable = True
        meta = self.folder / "identity.json"
        try:
            exists = meta.exists()
        except OSError:
            exists = False
        if not exists:
            self._write(lambda: atomic_write_text(meta, json.dumps(identity, indent=2, sort_keys=True)))

    def _write(self, write) -> None:
        """Run ``write`` unless an earlier write failed; a failure warns once and turns writing off."""
        if not self.writable:
            return
        try:
            write()
        except WriteError as exc:
            self.writable = False
            log.warning("feature cache not written (%s); going on without it", exc)

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
        self._write(lambda: atomic_write_bytes(self._path(content_digest), buffer.getvalue()))
