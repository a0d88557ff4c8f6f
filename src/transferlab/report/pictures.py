"""The pictures a report shows: an image file, or a record of a dataset file (CIFAR's ``test_batch.bin#17``).

A stored prediction names its test image by ``str()`` of what was loaded: a file's path,
or ``file#index`` for an image held in a dataset file (``data.memory.MemoryImage``). Every
gallery, the top losses, the confident mistakes, Grad-CAM and the activation maps find
their picture here, so they appear for class folders, list files and CIFAR alike.
"""

from __future__ import annotations

from pathlib import Path

from ..data.memory import MemoryImage

Picture = Path | MemoryImage  # or a ``data.packed.PackedImage`` (a tar shard's member)


def find_picture(text: str) -> Picture | None:
    """The image a stored prediction names, when it is still there: its file, or its record in a CIFAR batch."""
    path = Path(text)
    if path.is_file():
        return path
    source, mark, index = text.rpartition("#")
    if mark and source.lower().endswith(".tar") and Path(source).is_file():
        from ..data.shards import find_member

        return find_member(Path(source), index)
    if mark and index.isdigit():
        from ..data.cifar import read_record

        return read_record(Path(source), int(index))
    return None


def picture_rgb(picture: Picture):
    """An RGB PIL image (``UnreadableImage`` / ``OSError`` for a file that does not decode)."""
    if isinstance(picture, MemoryImage):
        return picture.pil()  # a packed image opens as a file does
    from ..data import open_rgb

    return open_rgb(picture)


def picture_tensor(picture: Picture, min_size: int | None = None):
    """3 x H x W uint8, as a model's tensor transform takes it."""
    if isinstance(picture, MemoryImage):
        return picture.tensor()
    from ..data import decode_rgb

    return decode_rgb(picture, min_size)
