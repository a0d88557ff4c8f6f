"""``transferlab auto``: rank candidates, probe the best, fine-tune the few left with successive halving, within
a wall-clock budget, and keep the decision trail.

Names are imported on first use, so the CLI's ``auto --help`` does not load torch or optuna.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {"run_auto": "run", "AutoConfig": "config", "parse_budget": "budget"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
