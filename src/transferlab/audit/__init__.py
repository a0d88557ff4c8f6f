"""Auditing a dataset before training: label issues (confident learning), near-duplicates, class overlap.

Names are imported on first use, so the CLI's ``audit --help`` does not load torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {"LabelIssue": "confident", "find_label_issues": "confident",
            "DuplicatePair": "duplicates", "find_duplicates": "duplicates"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
