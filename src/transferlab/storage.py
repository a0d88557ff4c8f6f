"""Where transferlab keeps files, and how it writes them safely.

Every file is written to a temporary name in its final folder and moved into
place with ``os.replace``: a reader (another process, another rank) sees the
whole file or none of it, and a killed run leaves no half-written file. What is
written takes the modes every other tool gives under the process's umask (files
0666 & ~umask, folders 0777 & ~umask), not the private ones of temporary files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError

CACHE_ENV = "TRANSFERLAB_CACHE_DIR"


def cache_root() -> Path:
    """``$TRANSFERLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/transferlab``, else ``~/.cache/transferlab``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "transferlab"


class WriteError(UserError, OSError):
    """A file could not be written (full disk, read-only folder, no permission): the earlier file is intact.

    Also an ``OSError``, so code that treats a failed write as optional keeps doing so."""


# Messages of writers that do not raise OSError for a failed write: torch.save's zip writer
# (inline_container.cc) raises RuntimeError, safetensors its own error carrying the OS error's name.
_WRITE_FAILURES = ("file write failed", "inline_container", "No space left", "StorageFull", "IoError",
                   "Read-only file system", "Permission denied")


def write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says that writing to the disk failed, rather than a bug."""
    if isinstance(exc, (OSError, WriteError)):
        return True
    return isinstance(exc, Exception) and any(text in str(exc) for text in _WRITE_FAILURES)


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code is None and ("No space left" in str(exc) or "StorageFull" in str(exc)):
        code = errno.ENOSPC
    if code is not None:
        return os.strerror(code).lower() if code != errno.ENOSPC else "no space left on the device"
    if "inline_container" in str(exc) or "file write failed" in str(exc):
        return "the write failed part-way (is the disk full?)"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def umask() -> int:
    """The process's umask, read without changing it (``/proc``), else set and put back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a file created as ``open()`` creates it: 0666 less the umask."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode of a folder created as ``mkdir`` creates it: 0777 less the umask."""
    return 0o777 & ~umask()


class FolderLock:
    """This process's exclusive claim on the results written into ``folder``, from the check that nothing is
    there through the last write: of two runs started at once into one folder, exactly one writes.

    An ``flock`` on a hidden file in the folder, so the kernel lets go when the process dies (a killed run
    leaves no stale claim to clear). Released, it removes its file, and the folder when it made it and nothing
    else was written there.
    """

    NAME = ".transferlab.lock"

    def __init__(self, folder: Path | str, name: str = NAME):
        self.folder = Path(folder)
        self.name = name  # a report's lock lies beside its folder, which is swapped in as a whole
        self.fd: int | None = None
        self.made = False

    def acquire(self, busy: str) -> "FolderLock":
        """Hold the lock, or raise ``UserError(busy)`` at once when another process holds it."""
        import fcntl

        path = self.folder / self.name
        while self.fd is None:
            try:
                self.made = self.made or not self.folder.exists()
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:  # the folder went away with its last holder's release: make it again
                continue
            except OSError as exc:
                raise WriteError(f"cannot write {self.folder}: {_reason(exc)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise UserError(busy) from None
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:  # not a file its last holder removed between our open and our lock
                self.fd = fd
            else:
                os.close(fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            (self.folder / self.name).unlink()
        os.close(self.fd)
        self.fd = None
        if self.made:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only when empty: a refused or failed run leaves no folder behind

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def folder_problem(folder: Path | str) -> str | None:
    """Why files cannot be made in ``folder`` (or in the nearest existing folder above it, where it does not
    exist yet), or None: a cheap test before long work, which creates nothing."""
    existing = Path(folder).expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return exc.strerror.lower() if exc.strerror else str(exc)
    return None


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    A failed write (full disk, read-only folder) raises ``WriteError`` naming ``path``; the
    temporary file is removed and whatever ``path`` held before is left as it was. The file
    moved into place has ``file_mode()`` (``mkstemp`` makes it private).
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, file_mode())  # by path: a writer may have made the file anew under this name
        os.replace(tmp_path, path)
    except WriteError:
        raise
    except Exception as exc:
        if not write_failure(exc):
            raise
        raise WriteError(f"cannot write {path}: {_reason(exc)}") from None
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's content, hex: the identity of an image or a weights file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
