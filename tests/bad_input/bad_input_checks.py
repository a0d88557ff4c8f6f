"""What every bad-input case asserts: exit code 2, exactly one ``error:`` line, no traceback, nothing lost."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path


def assert_one_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code``, said so in exactly one ``error:`` line holding ``fragments``."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == code, (result.returncode, output)
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def assert_clean_success(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "error:" not in result.stderr, output


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with the digest of its bytes: compare to prove nothing changed."""
    root = Path(root)
    if not root.exists():
        return {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def fill_disk(monkeypatch, when=lambda: True) -> None:
    """From now on (while ``when()``), each temporary file ``transferlab.storage`` creates is a link to ``/dev/full``:
    writes to it fail as on a full disk (ENOSPC from the kernel, through whichever writer: Python, torch.save...)."""
    import transferlab.storage as storage

    real = tempfile.mkstemp

    def full_mkstemp(*args, **kwargs):
        if not when():
            return real(*args, **kwargs)
        fd, name = real(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(name, os.O_WRONLY), name

    monkeypatch.setattr(storage.tempfile, "mkstemp", full_mkstemp)


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
