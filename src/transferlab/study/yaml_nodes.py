"""YAML read with line numbers kept, so every complaint about a study file can point at its line.

``load_located(path)`` returns plain Python values plus a ``Lines`` map from a
value's path (``("methods", 1, "head")``) to its 1-based line in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

Key = tuple  # a path of mapping keys and list indexes


@dataclass
class Lines:
    """Where each value (and each mapping key) of a YAML document starts."""

    file: str
    values: dict[Key, int] = field(default_factory=dict)
    keys: dict[Key, int] = field(default_factory=dict)

    def of(self, path: Key) -> int | None:
        """The line of ``path``'s key if it has one, else of its value, else of its nearest parent."""
        while True:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: Key, message: str) -> UserError:
        line = self.of(path)
        where = f"{self.file}:{line}" if line is not None else self.file
        return UserError(f"{where}: {message}")


def load_located(path: Path | str) -> tuple[Any, Lines]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no study file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read study file {path}: {exc}") from None
    return parse_located(text, str(path))


def parse_located(text: str, name: str = "<study>") -> tuple[Any, Lines]:
    lines = Lines(name)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        value = _convert(loader, node, (), lines) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise UserError(f"{name}{line}: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{name}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return value, lines


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: Key, lines: Lines) -> Any:
    lines.values[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                raise UserError(f"{lines.file}:{key_node.start_mark.line + 1}: a key must be a plain word")
            if key in result:
                raise UserError(f"{lines.file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            lines.keys[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _convert(loader, value_node, path + (key,), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
