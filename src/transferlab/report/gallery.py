"""Misclassified test images as small embedded thumbnails with their true and predicted labels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from .plots import data_uri
from .records import RunRecord

THUMBNAIL = 128


@dataclass
class Thumbnail:
    uri: str
    path: str
    true: str
    predicted: str


def misclassified(record: RunRecord, limit: int = 12) -> list[Thumbnail]:
    """Up to ``limit`` wrong predictions of a run whose image files still exist."""
    from ..data import UnreadableImage, open_rgb

    thumbnails = []
    for item in record.result.predictions if record.result is not None else []:
        if item["true"] == item["predicted"] or not Path(item["path"]).is_file():
            continue
        try:
            image = open_rgb(item["path"])
        except (UnreadableImage, OSError):
            continue
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        thumbnails.append(Thumbnail(data_uri(buffer.getvalue(), "image/jpeg"), item["path"], item["true"], item["predicted"]))
        if len(thumbnails) >= limit:
            break
    return thumbnails
