"""Lazy package exports: a package names what it offers; the module is imported on first use.

Keeps ``transferlab --help`` and one-line errors from waiting for torch and timm.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` resolving ``name`` from ``package.<exports[name]>``."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
