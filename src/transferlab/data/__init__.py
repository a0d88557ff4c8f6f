"""Data: image folders, their splits, built-in datasets and the decoding path."""

from .builtin import BUILTIN_DATASETS, resolve_data_path
from .images import UnreadableImage, open_rgb
from .layout import DatasetSplits, Sample, limit_per_class, load_splits, select_classes
from .loading import Batch, image_batches


def load_dataset(
    data,
    *,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    per_class: int | None = None,
) -> DatasetSplits:
    """A dataset folder (or built-in name) read, split, and cut down to the classes and sizes asked for."""
    splits = load_splits(resolve_data_path(data), ratios=ratios, seed=seed)
    splits = select_classes(splits, classes, num_classes)
    return limit_per_class(splits, per_class, seed)


__all__ = [
    "BUILTIN_DATASETS",
    "Batch",
    "DatasetSplits",
    "Sample",
    "UnreadableImage",
    "image_batches",
    "load_dataset",
    "open_rgb",
]
