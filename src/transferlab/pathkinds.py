"""What a path given by the user is, so that a refusal says so instead of "not found" for a path that exists.

``wrong_kind(path, what, expected)`` is the one sentence: ``<what> not found: PATH`` when nothing
is there, else ``<what> PATH is a folder (a FIFO, a file...), not <expected>``.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import UserError


def kind_of(path: Path | str) -> str | None:
    """``"a folder"``, ``"a file"``, ``"a FIFO (named pipe)"``...; None when nothing is at ``path``."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if path.is_symlink() else None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file or a folder"


def wrong_kind(path: Path | str, what: str, expected: str) -> UserError:
    """The refusal of ``path``, which is not ``expected`` (e.g. "a file", "a folder or a .csv/.tsv list")."""
    kind = kind_of(path)
    if kind is None:
        return UserError(f"{what} not found: {path}")
    return UserError(f"{what} {path} is {kind}, not {expected}")
