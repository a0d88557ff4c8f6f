"""A run's identity: a stable hash of everything that decides its result.

Two runs with the same identity are the same experiment, so a finished one is
skipped on a rerun and a failed one retried. The identity is made of:

- the run kind (probe or finetune) and its config, less the fields the config
  itself declares speed-only (``options.speed_only_fields``: workers, device,
  cache use, output folder, resume) and less the data folder's path;
- the data's *fingerprint* in place of that path: a digest of every candidate image
  file (its path relative to the data folder and its content's SHA-256), so a changed,
  added or removed image makes every run a new experiment, and the same images in
  another folder are the same experiment;
- a fine-tune's recipe values (``finetune.recipes``), which fill in every training option left unset: a
  recipe changed by a new measurement makes its runs new experiments;
- the transferlab version, since the code decides results as much as the config.

The fingerprint is computed once per plan; file digests are cached by
(path, size, mtime_ns) under ``cache_root()/digests``, so re-planning reads no image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..options import result_settings
from ..storage import atomic_write_text, cache_root, file_digest, text_digest

DIGESTS_FOLDER = "digests"
NOT_IDENTITY = frozenset({"data"})  # replaced by the data fingerprint


def identity_fields(config: Any) -> dict[str, Any]:
    """The config's fields that decide its result, and its recipe's values (speed-only fields and the data path
    left out)."""
    return {k: v for k, v in result_settings(config).items() if k not in NOT_IDENTITY}


def run_id(runner: str, config: Any, data_fingerprint: str) -> str:
    """16 hex digits of SHA-256 over the runner kind, the identity fields, the data and the version."""
    import transferlab

    payload = json.dumps({"runner": runner, "config": identity_fields(config), "data": data_fingerprint,
                          "transferlab": transferlab.__version__}, sort_keys=True, default=str)
    return text_digest(payload)[:16]


# -- the data fingerprint ---------------------------------------------------------------------------------------


def candidate_files(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every file the data loader may read, sorted.

    As ``data.layout`` reads a folder: each non-hidden sub-folder (a class, or a
    train/val/test split of class folders) and every non-hidden file below it.
    """
    found = []
    for top in sorted(root.iterdir()):
        if not top.is_dir() or top.name.startswith("."):
            continue
        for path in top.rglob("*"):
            if not path.name.startswith(".") and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def data_fingerprint(data: str | Path) -> str:
    """A digest of the data's images: sorted (relative path, content SHA-256) of every candidate file.

    ``data`` is a folder or a built-in dataset name (``digits``); for a list file, the list itself and every
    image it names; for a CIFAR binary folder, its batch files.
    """
    from ..data.builtin import require_data_folder, resolve_data_path

    from ..data.sources import packed_files, source_files

    require_data_folder(data)
    packed = packed_files(data)  # tar shards, an hf: dataset: the files they are read from
    root = Path(str(data)) if packed is not None else resolve_data_path(data).resolve()
    cache = DigestCache(root)
    entries = []
    files = packed if packed is not None else source_files(root)
    for relative, path in files if files is not None else candidate_files(root):
        try:
            entries.append((relative, cache.digest(relative, path)))
        except OSError as exc:
            raise UserError(f"cannot read {path} to fingerprint the data: {exc}") from None
    cache.save()
    return text_digest(json.dumps(entries))


class DigestCache:
    """Content digests of one folder's files, reused while a file's size and mtime_ns are unchanged.

    One small JSON file per data folder; written atomically, so two planners at once
    leave one whole file (the last one's) and a torn or stale cache only costs reading.
    """

    def __init__(self, root: Path):
        self.root = root
        self.path = cache_root() / DIGESTS_FOLDER / f"{text_digest(str(root))[:24]}.json"
        self.old: dict[str, list] = {}
        self.new: dict[str, list] = {}
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(stored, dict) and stored.get("root") == str(root) and isinstance(stored.get("files"), dict):
                self.old = stored["files"]
        except (OSError, ValueError):
            pass

    def digest(self, relative: str, path: Path) -> str:
        stat = os.stat(path)
        key = [stat.st_size, stat.st_mtime_ns]
        known = self.old.get(relative)
        if isinstance(known, list) and len(known) == 3 and known[:2] == key:
            digest = known[2]
        else:
            digest = file_digest(path)
        self.new[relative] = key + [digest]
        return digest

    def save(self) -> None:
        if self.new == self.old:
            return
        try:
            atomic_write_text(self.path, json.dumps({"root": str(self.root), "files": self.new}))
        except OSError:
            pass  # a cache that cannot be written only costs reading the images again next time
