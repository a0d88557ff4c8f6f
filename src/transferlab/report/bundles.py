"""The saved models a report draws from, each loaded once however many sections use it.

A bundle takes a second or more to rebuild; the new-images table, the Grad-CAM
figures, the mistakes, the top losses and the filters all ask for the same few.
"""

from __future__ import annotations

from pathlib import Path

from .records import RunRecord


def model_path(record: RunRecord) -> Path | None:
    """The run's saved bundle folder, when the run saved one and it is still on disk."""
    path = getattr(record.result, "model_path", None) if record.result is not None else None
    return Path(path) if path and Path(path).is_dir() else None


class SavedModels:
    """Bundles by folder, loaded on first use; a folder that failed to load fails again at once, with its reason."""

    def __init__(self):
        self._loaded: dict[Path, object] = {}

    def get(self, record: RunRecord):
        from ..finetune.bundle import load_bundle

        path = model_path(record)
        if path is None:
            raise FileNotFoundError(f"run {record.id} has no saved model on disk")
        if path not in self._loaded:
            try:
                self._loaded[path] = load_bundle(path)
            except Exception as exc:
                self._loaded[path] = exc
        loaded = self._loaded[path]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded
