"""Ranking candidates before training: transferability scores from cached frozen features.

Names are imported on first use, so the CLI's ``rank --help`` does not load torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {"leep": "scores", "logme": "scores", "nce": "scores"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
