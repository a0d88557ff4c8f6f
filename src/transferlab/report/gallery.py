"""Misclassified test images as small embedded thumbnails with their true and predicted labels."""

from __future__ import annotations

import io
from dataclasses import dataclass

from .plots import data_uri
from .records import RunRecord

THUMBNAIL = 128


@dataclass
class Thumbnail:
    uri: str
    path: str
    true: str
    predicted: str


@dataclass
class Card:
    """A gallery image with its caption lines, (css class, text) each."""

    uri: str
    alt: str
    path: str
    lines: list[tuple[str, str]]


def spread_over_classes(items: list[dict]) -> list[dict]:
    """Mistakes taken in turn from each true class, so one bad class does not fill the gallery."""
    by_class: dict[str, list[dict]] = {}
    for item in items:
        by_class.setdefault(item["true"], []).append(item)
    queues = list(by_class.values())
    spread = []
    while queues:
        spread += [queue.pop(0) for queue in queues]
        queues = [queue for queue in queues if queue]
    return spread


def thumbnail_uri(image) -> str:
    """``image`` fitted into THUMBNAIL px as a data URI: shrunk (JPEG) when large; when small, enlarged by a whole
    factor without smoothing (PNG keeps its pixels sharp), since an 8x8 digit would otherwise show as 8 px."""
    from PIL import Image

    buffer = io.BytesIO()
    factor = THUMBNAIL // max(image.size)
    if factor >= 2:
        image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST).save(buffer, "PNG")
        return data_uri(buffer.getvalue(), "image/png")
    image = image.copy()
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    image.save(buffer, "JPEG", quality=80)
    return data_uri(buffer.getvalue(), "image/jpeg")


def misclassified(record: RunRecord, limit: int = 12) -> list[Thumbnail]:
    """Up to ``limit`` wrong predictions of a run whose images are still there (files, or records of a CIFAR
    batch), spread over the true classes."""
    from ..data import UnreadableImage
    from .pictures import find_picture, picture_rgb

    wrong = [item for item in (record.result.predictions if record.result is not None else [])
             if item["true"] != item["predicted"]]
    thumbnails = []
    for item in spread_over_classes(wrong):
        picture = find_picture(item["path"])
        if picture is None:
            continue
        try:
            uri = thumbnail_uri(picture_rgb(picture))
        except (UnreadableImage, OSError):
            continue
        thumbnails.append(Thumbnail(uri, item["path"], item["true"], item["predicted"]))
        if len(thumbnails) >= limit:
            break
    return thumbnails
