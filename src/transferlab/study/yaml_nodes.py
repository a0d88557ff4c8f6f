"""YAML read with line numbers kept, so every complaint about a study file can point at its line.

``load_located(path)`` returns plain Python values plus a ``Lines`` map from a
value's path (``("methods", 1, "head")``) to its 1-based line in the file.

A study file is small: its size, its nesting depth and the number of values it
expands to (aliases and merge keys counted as often as they are used) are bounded
before anything is built, so a hostile file (a "billion laughs" of nested aliases,
an alias to itself, thousands of brackets) gets one error line, fast, in little memory.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

Key = tuple  # a path of mapping keys and list indexes

MAX_BYTES = 1_000_000  # a study file of many hundred methods is a few tens of kilobytes
MAX_DEPTH = 64  # nesting of mappings and lists, also through aliases
MAX_VALUES = 100_000  # values once every alias and merge key is expanded


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
        if path.exists() and not path.is_file():
            raise UserError(f"study file {path} is not a regular file")
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise UserError(f"{path}: a study file must be at most {MAX_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no study file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read study file {path}: {exc}") from None
    return parse_located(text, str(path))


def parse_located(text: str, name: str = "<study>") -> tuple[Any, Lines]:
    lines = Lines(name)
    if len(text) > MAX_BYTES:
        raise UserError(f"{name}: a study file must be at most {MAX_BYTES:,} bytes")
    loader = yaml.SafeLoader(text)
    try:
        _check_nesting(text, name)  # before composing: PyYAML's composer recurses once per level
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, name)
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
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<): merged pairs first, the mapping's own last
        merged = len(node.value) - own
        result: dict[Any, Any] = {}
        own_keys: set = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _construct(loader, key_node, lines)
            if not isinstance(key, (str, int, float, bool)):
                raise UserError(f"{lines.file}:{key_node.start_mark.line + 1}: a key must be a plain word")
            if index >= merged:  # a merged value may be overridden; a key written twice may not
                if key in own_keys:
                    raise UserError(f"{lines.file}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
                own_keys.add(key)
            lines.keys[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _convert(loader, value_node, path + (key,), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), lines) for i, item in enumerate(node.value)]
    return _construct(loader, node, lines)


def _construct(loader: yaml.SafeLoader, node: yaml.Node, lines: Lines) -> Any:
    """A scalar's Python value; Python's own limits (an integer of more than 4,300 digits, a date like
    2001-13-45) an error naming the line."""
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:
        where = f"{lines.file}:{node.start_mark.line + 1}"
        text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        if node.tag == "tag:yaml.org,2002:int":
            raise UserError(f"{where}: a number of {len(text):,} characters is too long to read "
                            f"(at most {sys.get_int_max_str_digits():,} digits)") from None
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise UserError(f"{where}: cannot read the value {shown!r}: {exc}") from None


def _check_nesting(text: str, name: str) -> None:
    """Mappings and lists nested at most ``MAX_DEPTH`` deep in the text (PyYAML's parser is not recursive)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"{name}:{event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, name: str) -> None:
    """The document's size and depth with every alias expanded, counted on the shared node graph
    (each node once, without expanding anything), and no alias inside itself."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = _children(node)
            size[key] = 1 + sum(size[id(kid)] for kid in kids)
            depth[key] = 1 + max((depth[id(kid)] for kid in kids), default=0)
            visiting.discard(key)
            where = f"{name}:{node.start_mark.line + 1}"
            if size[key] > MAX_VALUES:
                raise UserError(f"{where}: expands to more than {MAX_VALUES:,} values (aliases counted each time "
                                "they are used)")
            if depth[key] > MAX_DEPTH:
                raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep (aliases included)")
            continue
        if key in size:
            continue
        if key in visiting:
            raise UserError(f"{name}:{node.start_mark.line + 1}: an alias refers to the value that contains it")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)
