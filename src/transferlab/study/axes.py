"""Swept values as keys and as text: a list value (``augment: [flip, crop]``) must group and print like a number.

Runs are grouped by their swept values (dict keys, sets), so every value is made
hashable here, once: numbers, words, booleans and null stay as they are (a numeric
axis still plots on a numeric scale); a list becomes its canonical text.
"""

from __future__ import annotations

from typing import Any


def axis_text(value: Any) -> str:
    """How a swept value reads in labels and tables: ``flip,crop`` for a list, ``[]`` for an empty one."""
    if isinstance(value, (list, tuple)):
        return ",".join(axis_text(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return ",".join(f"{k}={axis_text(v)}" for k, v in sorted(value.items())) or "{}"
    return str(value)


def axis_key(value: Any) -> Any:
    """A hashable, sortable stand-in for a swept value: scalars as they are, anything else as its text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return axis_text(value)


def setting_text(axes: dict[str, Any]) -> str:
    """``per_class=8 augment=flip,crop``: the swept values of a run in one line."""
    return " ".join(f"{k}={axis_text(v)}" for k, v in axes.items())
