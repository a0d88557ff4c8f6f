"""Batches decoded on the model's device: workers only read the files, the device decodes and resizes.

On a GPU, nvJPEG (``torchvision.io.decode_jpeg(..., device="cuda")``) decodes a whole
batch of JPEGs at once, far faster than CPU workers can, and ``TensorEvalTransform``
resizes, crops and normalises the decoded tensors where they already are. A file
nvJPEG should not take (not a plain RGB or greyscale JPEG, EXIF-rotated, or one it
rejects) is decoded on the CPU by ``decode_rgb``, as everywhere else, and joins its
batch. The path is the same on every device, so it is tested on the CPU.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .decode import decode_rgb
from .images import JPEG_FORMATS, UNREADABLE_ERRORS, UnreadableImage
from .loading import Batch
from .packed import encoded_bytes

EXIF_ORIENTATION = 0x0112


class EncodedFiles(Dataset):
    """``(index, tensor)``: a plain JPEG's bytes (1-D uint8), another image decoded (3 x H x W), or None."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            data = encoded_bytes(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as image:  # the header only: PIL's bomb limit applies
                    plain = image.format in JPEG_FORMATS and image.mode in ("RGB", "L") \
                        and image.getexif().get(EXIF_ORIENTATION, 1) == 1
            if plain:
                return index, torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return index, decode_rgb(path)
        except (UnreadableImage, *UNREADABLE_ERRORS):
            return index, None


def _decode_on(encoded: list[torch.Tensor], device: str) -> list[torch.Tensor | None]:
    """nvJPEG (or libjpeg on the CPU) for a batch; a file it rejects comes back None."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not encoded:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice of its decoders
        try:
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad file fails the whole call: decode one by one
            decoded: list[torch.Tensor | None] = []
            for data in encoded:
                try:
                    decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
            return decoded


def device_batches(paths: Sequence[Path], transform: Callable, device: str, batch_size: int = 32,
                   num_workers: int = 0) -> Iterator[Batch]:
    """Batches of ``paths`` in order, decoded and transformed on ``device`` (images stay there)."""
    if not paths:
        return
    loader = DataLoader(EncodedFiles(paths), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=list, pin_memory=False)
    for items in loader:
        jpegs = [(i, t) for i, t in items if t is not None and t.ndim == 1]
        images: dict[int, torch.Tensor] = {i: t.to(device) for i, t in items if t is not None and t.ndim == 3}
        unreadable = [i for i, t in items if t is None]
        for (i, _), decoded in zip(jpegs, _decode_on([t for _, t in jpegs], device)):
            if decoded is None:
                unreadable.append(i)
            else:
                images[i] = decoded
        order = sorted(images)
        stacked = torch.stack([transform(images[i]) for i in order]) if order else None
        yield Batch(order, stacked, sorted(unreadable))
