"""The machine and library versions a run was measured on: timings mean little without them."""

from __future__ import annotations

import os
import platform
import socket
import sys
from functools import cache
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def environment() -> dict:
    import torch

    from .. import __version__

    return {
        "python": platform.python_version(),
        "transferlab": __version__,  # the version run identities are made with
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "scikit-learn": _version("scikit-learn"),
        "numpy": _version("numpy"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "executable": sys.executable,
    }
