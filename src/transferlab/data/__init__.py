"""Data: image folders, their splits, built-in datasets and the decoding path.

Names are imported on first use, so checking a data folder does not load torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "BUILTIN_DATASETS": "builtin",
    "require_data_folder": "builtin",
    "resolve_data_path": "builtin",
    "UnreadableImage": "images",
    "open_rgb": "images",
    "decode_rgb": "decode",
    "TensorEvalTransform": "transforms",
    "DatasetSplits": "layout",
    "Sample": "layout",
    "limit_per_class": "layout",
    "load_dataset": "layout",
    "load_splits": "layout",
    "select_classes": "layout",
    "Batch": "loading",
    "image_batches": "loading",
    "takes_tensors": "loading",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
