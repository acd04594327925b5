"""YAML loading that remembers the line of every key and item, for file:line error messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

Path = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so ``on:``/``yes``/``no`` stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class YamlError(ValueError):
    """Malformed YAML, with the 1-based line where the parser gave up."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse ``text``; return the data and a map from key/index paths to 1-based lines."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(line, str(exc.problem or exc)) from exc
    except yaml.YAMLError as exc:
        raise YamlError(1, str(exc)) from exc
    lines: dict[Path, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def line_of(lines: dict[Path, int], loc: Sequence[str | int]) -> int:
    """Line of the deepest known prefix of ``loc``; pydantic union tags in ``loc`` are skipped."""
    best = lines.get((), 1)
    path: Path = ()
    for part in loc:
        candidate = (*path, part)
        if candidate in lines:
            path = candidate
            best = lines[candidate]
    return best
