"""Images stored inside bigger files: a WebDataset shard's tar member, a row of a Hugging Face dataset.

A ``PackedImage`` is what ``Sample.path`` holds for such data: a small reference to where the
encoded bytes are, never the bytes, so an index of any size costs a few hundred bytes an image and
an image is read only when it is decoded. Everything that opens a file opens a packed image through
``read_bytes``; the feature cache keys it by the digest of those bytes, as a file by its content,
so the same picture in a folder and in a shard shares its cached features, and repacking keeps them.

Splits and ``per_class`` order a class's samples by ``sort_name`` (a file: its path): a shard
member's name (``KEY.jpg``), a dataset row's stored file name, so data packed from a folder
chooses the folder's images for the same seed.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path


class PackedImage:
    """The encoded bytes of one image file held inside another file (subclasses say where)."""

    def read_bytes(self) -> bytes:
        raise NotImplementedError

    @property
    def sort_name(self) -> str:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.sort_name.rsplit("/", 1)[-1]

    def open(self) -> io.BytesIO:
        """A file object of the encoded image, for ``PIL.Image.open``."""
        return io.BytesIO(self.read_bytes())

    def digest(self) -> str:
        """SHA-256 of the encoded bytes: the same as ``storage.file_digest`` of the file they were packed from."""
        return hashlib.sha256(self.read_bytes()).hexdigest()


def sort_name(item) -> str:
    """How a sample's image orders within its class: a file by its path, a packed image by its own name."""
    return item.sort_name if isinstance(item, PackedImage) else str(item)


def encoded_bytes(item: Path | str | PackedImage) -> bytes:
    """The encoded image, from its file or from where it is packed (OSError when it cannot be read)."""
    return item.read_bytes() if isinstance(item, PackedImage) else Path(item).read_bytes()


def openable(item: Path | str | PackedImage):
    """What ``PIL.Image.open`` takes for ``item``: its path, or its bytes in a file object."""
    return item.open() if isinstance(item, PackedImage) else item


def shard_of(item) -> str | None:
    """The shard file a packed image is read from (None: not in a shard)."""
    return getattr(item, "shard", None) if isinstance(item, PackedImage) else None


def rank_positions(items, rank: int, world_size: int) -> list[int] | None:
    """The positions of ``items`` rank ``rank`` of ``world_size`` reads when they are tar-shard members: whole
    shards (each shard is read by one rank), balanced by image count (largest shard first, to the least loaded
    rank), in shard order within a rank so that each shard is read front to back. None for other images: the
    caller's contiguous slices serve them."""
    shards: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        shard = shard_of(item)
        if shard is None:
            return None
        shards.setdefault(shard, []).append(position)
    loads = [0] * world_size
    owner: dict[str, int] = {}
    for shard in sorted(shards, key=lambda s: (-len(shards[s]), s)):
        chosen = min(range(world_size), key=lambda r: (loads[r], r))
        owner[shard] = chosen
        loads[chosen] += len(shards[shard])
    mine = [p for shard in sorted(shards) if owner[shard] == rank for p in shards[shard]]
    return sorted(mine, key=lambda p: (items[p].shard, items[p].offset))


def is_packed(data) -> bool:
    """Whether ``--data`` names tar shards or a Hugging Face dataset (cheap: nothing is read)."""
    from .hfdata import is_hf_spec
    from .shards import is_shard_spec

    return is_hf_spec(data) or is_shard_spec(data)


def check_packed(data) -> None:
    """Tar shards' files or a Hugging Face dataset's path checked to exist, the extra to be installed (cheap)."""
    from .hfdata import hf_path, is_hf_spec
    from .shards import shard_files

    hf_path(data) if is_hf_spec(data) else shard_files(data)
