"""On-disk feature cache: one small .npz file per image, keyed by what determines it.

The folder is named by a digest of the extractor's identity (backbone, weights,
layer, pooling, preprocessing, precision); the file by the digest of the image
file's content. Renaming or moving images keeps their features; changing a pixel
or a setting does not reuse them. Files are written atomically, so concurrent
runs and ranks can share one cache.

Each file holds the features and the digest of what was written; an entry read
back with another shape or dtype, non-finite values or another digest (changed on
disk) is discarded with a warning and recomputed.

The cache is optional: when its folder cannot be written (read-only, full disk,
no permission) it warns once and the run goes on without writing to it.
"""

from __future__ import annotations

import io
import zipfile
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..readback import array_digest, features_problem
from ..storage import WriteError, atomic_write_bytes, atomic_write_text, cache_root, text_digest

log = logging.getLogger(__name__)


class FeatureCache:
    def __init__(self, identity: dict[str, Any], root: Path | None = None):
        canonical = json.dumps(identity, sort_keys=True)
        self.key = text_digest(canonical)
        self.folder = (root or cache_root() / "features") / self.key[:24]
        self.identity = identity
        self.writable = True
        self.discarded = 0  # damaged entries met (the first one warns)
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
        return self.folder / content_digest[:2] / f"{content_digest}.npz"

    def get(self, content_digest: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The cached features of shape ``shape`` (float32), or None: absent, or damaged (then recomputed)."""
        path = self._path(content_digest)
        try:
            stored = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            return self._discard(path, f"cannot be read ({type(exc).__name__})")
        if not isinstance(stored, np.lib.npyio.NpzFile) or set(stored.files) != {"features", "digest"}:
            return self._discard(path, "is not a feature-cache entry")
        try:
            with stored:
                features, digest = stored["features"], str(stored["digest"])
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            return self._discard(path, f"cannot be read ({type(exc).__name__})")
        problem = features_problem(features, shape, digest)
        return self._discard(path, problem) if problem else features

    def _discard(self, path: Path, problem: str) -> None:
        """None for a damaged entry; the first of a run warns."""
        if not self.discarded:
            log.warning("feature cache entry %s %s: discarded, its features are recomputed", path, problem)
        self.discarded += 1
        return None

    def put(self, content_digest: str, features: np.ndarray) -> None:
        features = np.ascontiguousarray(features, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, features=features, digest=np.array(array_digest(features)))
        self._write(lambda: atomic_write_bytes(self._path(content_digest), buffer.getvalue()))
