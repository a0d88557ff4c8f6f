"""Checking a study file's values against the run-config dataclasses' own field types.

The allowed keys of a method are the fields of ``ProbeConfig`` or
``FinetuneConfig``: one source of truth, so a new config field is usable in a
study file without touching this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from functools import cache
from typing import Any

from ..options import describe_type
from .yaml_nodes import Key, Lines


@cache
def field_types(config_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_class)}


def suggestion(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(lines: Lines, path: Key, where: str, allowed) -> Exception:
    key = path[-1]
    allowed = sorted(allowed)
    return lines.error(path, f"unknown key {key!r} in {where}{suggestion(key, allowed)}; allowed: {', '.join(allowed)}")


def describe(annotation: Any) -> str:
    return describe_type(annotation, none="null")


def coerce(value: Any, annotation: Any, lines: Lines, path: Key, name: str) -> Any:
    """``value`` converted to ``annotation`` (e.g. YAML's ``1e-3`` string to a float), or a located error."""
    result = _coerce(value, annotation)
    if result is _INVALID:
        raise lines.error(path, f"{name} must be {describe(annotation)}, got {value!r}")
    return result


_INVALID = object()


def _coerce(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None if type(None) in typing.get_args(annotation) else _INVALID
        for option in typing.get_args(annotation):
            if option is not type(None):
                result = _coerce(value, option)
                if result is not _INVALID:
                    return result
        return _INVALID
    if origin in (list, tuple):
        if isinstance(value, str):  # the command line's comma form: "flip,rotate", "0.7,0.15,0.15"
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return _INVALID
        args = typing.get_args(annotation)
        if origin is tuple and len(value) != len(args):
            return _INVALID
        items = [_coerce(v, args[0] if origin is list else a) for v, a in zip(value, args if origin is tuple else [args[0]] * len(value))]
        if any(item is _INVALID for item in items):
            return _INVALID
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        return value if isinstance(value, bool) else _INVALID
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if annotation is float:
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 (no dot) as text
            except ValueError:
                return _INVALID
        return _INVALID
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # e.g. a layer index
        return _INVALID
    return value
