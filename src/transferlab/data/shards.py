"""WebDataset tar shards as a dataset: ``--data 'shards/train-{000000..000009}.tar'``, one ``.tar``, or a folder of them.

A sample is the tar members sharing a key (webdataset's rule: the member name up to the first dot of
its last part): an image ``KEY.jpg`` (or ``.jpeg``, ``.png``, ``.webp``) and ``KEY.cls`` holding its
class name. One pass over each shard's tar headers indexes it (only the small ``.cls`` members are
read, no image); every image becomes a ``ShardImage`` (shard, offset, size), read by seek when it is
decoded. So memory does not grow with the shards, and splits, ``per_class`` and seeds work as on a
folder: within a class, samples order by member name as files by path.

Splits follow the shard file names as a folder's follow its sub-folders: ``train-*`` shards with
``val-*`` (``validation-``, ``valid-``) and/or ``test-*`` shards are the splits; otherwise all shards
are one pool, split by the ratios and the seed. Brace patterns and ``::`` lists expand as in
webdataset. Shards must be local, uncompressed tar files (they are read by seek): a URL is refused.

A shard that is not a tar file or is cut short, a sample without a ``.cls`` label or without an image,
an empty or non-UTF-8 label, and a key met twice are each one error naming the shard and the key.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..pathkinds import wrong_kind
from .packed import PackedImage

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # in order of preference when a sample has several
LABEL_EXTENSION = "cls"
MAX_LABEL_BYTES = 4096
SHARD_ROLE = re.compile(r"^(train|validation|valid|val|test)(?=[-_.])", re.IGNORECASE)
INSTALL = "WebDataset shards need the 'shards' extra: pip install 'transferlab[shards]'"


@dataclass(frozen=True)
class ShardImage(PackedImage):
    """One image member of a tar shard: its bytes are ``size`` bytes at ``offset`` of the shard file."""

    shard: str
    member: str  # the member's name in the tar, e.g. "rose/image_0001.jpg"
    offset: int
    size: int

    def read_bytes(self) -> bytes:
        with open(self.shard, "rb") as stream:
            stream.seek(self.offset)
            data = stream.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self}: the shard ends {self.size - len(data)} bytes early")
        return data

    @property
    def sort_name(self) -> str:
        return self.member

    def __str__(self) -> str:
        return f"{self.shard}#{self.member}"


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE)) or text.startswith("pipe:")


def is_shard_spec(data) -> bool:
    """Whether ``--data`` names tar shards: a brace pattern or ``::`` list, a ``.tar`` file, a URL, or a folder
    holding ``.tar`` files and no sub-folder (cheap: nothing is read)."""
    text = str(data)
    if text.startswith("hf:"):
        return False
    if is_url(text) or "::" in text or ("{" in text and "}" in text and not Path(text).expanduser().exists()):
        return True
    path = Path(text).expanduser()
    if path.is_file():
        return path.suffix.lower() == ".tar"
    return path.is_dir() and _folder_shards(path) is not None


def _folder_shards(folder: Path) -> list[Path] | None:
    try:
        children = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return None
    tars = sorted(p for p in children if p.is_file() and p.suffix.lower() == ".tar")
    return tars if tars and not any(p.is_dir() for p in children) else None


def absolute_spec(text: str, base: Path) -> str:
    """A shard spec with each ``::`` part's relative path read from ``base`` (a study file's folder)."""
    parts = [Path(part).expanduser() for part in text.split("::")]
    return "::".join(str(p if p.is_absolute() or is_url(str(p)) else (base / p).absolute()) for p in parts)


def shard_files(spec) -> list[Path]:
    """The shard files ``spec`` names, each checked to be a file (cheap: the CLI checks before torch loads)."""
    text = str(spec)
    try:
        from braceexpand import braceexpand  # webdataset's own expansion
    except ImportError:
        raise UserError(INSTALL) from None
    names = [name for part in text.split("::") for name in braceexpand(part)]
    for name in names:
        if name.startswith("file://"):
            continue
        if is_url(name):
            raise UserError(f"shard {name}: only local shards are read (by seek); download it first")
    paths = [Path(name.removeprefix("file://")).expanduser() for name in names]
    if len(paths) == 1 and paths[0].is_dir():
        found = _folder_shards(paths[0])
        if found is None:
            raise UserError(f"{paths[0]} holds no .tar shards")
        return found
    for path in paths:
        if not path.is_file():
            raise wrong_kind(path, "shard", "a .tar file")
    if len(set(paths)) != len(paths):
        raise UserError(f"{text} names a shard twice")
    return paths


def shard_role(path: Path) -> str | None:
    """The split a shard's file name gives it (``train``, ``val``, ``test``), or None."""
    from .layout import SPLIT_NAMES

    found = SHARD_ROLE.match(path.name)
    return SPLIT_NAMES[found.group(1).lower()] if found else None


def index_shard(path: Path) -> list[tuple[str, ShardImage]]:
    """(class name, image) of every sample of one shard, from one pass over its tar headers."""
    try:
        from webdataset.tariterators import base_plus_ext
    except ImportError:
        raise UserError(INSTALL) from None
    shard = str(path)
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    labels: dict[str, bytes] = {}
    try:
        size = path.stat().st_size
        with tarfile.open(path, "r:") as tar:  # uncompressed: members are read later by seek
            while (info := tar.next()) is not None:
                tar.members.clear()  # the index keeps what it needs, not every header
                if not info.isfile():
                    continue
                key, extension = base_plus_ext(info.name)
                if key is None or Path(key).name.startswith((".", "__")):
                    continue
                extension = extension.lower()
                if info.offset_data + info.size > size:
                    raise tarfile.ReadError(f"member {info.name} runs past the end of the file")
                found = members.setdefault(key, {})
                if extension in found:
                    raise UserError(f"shard {path}: key {key!r} has two .{extension} members")
                found[extension] = info
                if extension == LABEL_EXTENSION:
                    if info.size > MAX_LABEL_BYTES:
                        raise UserError(f"shard {path}: {info.name} is {info.size} bytes, not a class name")
                    labels[key] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"shard {path} is not a readable tar file ({exc or type(exc).__name__}): shards must be "
                        "uncompressed .tar files") from None
    samples = []
    for key, found in members.items():
        image = next((found[e] for e in IMAGE_EXTENSIONS if e in found), None)
        if image is None:
            raise UserError(f"shard {path}: sample {key!r} has no image (.{', .'.join(IMAGE_EXTENSIONS)}); it has "
                            f".{', .'.join(sorted(found))}")
        if key not in labels:
            raise UserError(f"shard {path}: sample {key!r} has no label: add {key}.{LABEL_EXTENSION} holding its "
                            "class name")
        try:
            name = labels[key].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"shard {path}: {key}.{LABEL_EXTENSION} is not UTF-8 text") from None
        if not name:
            raise UserError(f"shard {path}: {key}.{LABEL_EXTENSION} is empty (it must hold the class name)")
        samples.append((name, ShardImage(shard, image.name, image.offset_data, image.size)))
    return samples


def find_member(shard: Path, member: str) -> ShardImage | None:
    """Member ``member`` of ``shard`` (a stored prediction names it ``shard.tar#member``), None if it is not there."""
    try:
        with tarfile.open(shard, "r:") as tar:
            info = tar.getmember(member)
    except (KeyError, tarfile.TarError, OSError):
        return None
    return ShardImage(str(shard), member, info.offset_data, info.size) if info.isfile() else None


def read_shard_splits(spec, ratios: tuple[float, float, float], seed: int, val_per_class: int | None,
                      test_per_class: int | None):
    """The ``DatasetSplits`` of tar shards: their own splits when their names give them, else split by ratios."""
    from .layout import named_splits

    files = shard_files(spec)
    roles = {path: shard_role(path) for path in files}
    given = {role for role in roles.values() if role}
    split = "train" in given and len(given) > 1
    if split:
        unnamed = [path for path, role in roles.items() if role is None]
        if unnamed:
            raise UserError(f"shard {unnamed[0]} belongs to no split: name it train-*, val-* or test-* like the "
                            "others")
    parts: dict[str, list] = {}
    where: dict[tuple[str, str], Path] = {}
    for path in files:
        role = roles[path] if split else "train"
        for name, image in index_shard(path):
            earlier = where.setdefault((role, image.member), path)
            if earlier != path:
                raise UserError(f"sample {image.member!r} is in two shards: {earlier} and {path}")
            parts.setdefault(role, []).append((name, image))
    return named_splits(Path(str(spec)), parts, "shards", ratios, seed, val_per_class, test_per_class)
