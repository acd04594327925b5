"""The one loader for YAML an operator or a shop hands us (SOPs, library files, import mappings, shop
manifests, eval cases): bounded, and remembering the line of every key and item for file:line messages.

Bounded means no input can make it expand or recurse: anchors and aliases are refused outright (an alias
bomb of a few hundred bytes would otherwise expand to gigabytes, and ``&a [*a]`` recurses), nesting depth
and the number of values are capped, integers must fit 64 bits, strings must be valid Unicode, and a value
its tag cannot construct (``2026-02-30``) is a YAML problem with its line, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.constructor import ConstructorError

Path = tuple[str | int, ...]

MAX_DEPTH = 64
MAX_NODES = 50_000
_INT64 = 2**63
_SURROGATE = re.compile("[\ud800-\udfff]")


class YamlError(ValueError):
    """Malformed or refused YAML, with the 1-based line of the problem."""

    def __init__(self, line: int, reason: str, column: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.column = column  # 1-based, where the parser knows it
        self.reason = reason


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false, so ``on:``/``yes``/``no`` stay strings) that
    composes without anchors or aliases, within :data:`MAX_DEPTH` and :data:`MAX_NODES`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise YamlError(line, "anchors and aliases (&name, *name) are not allowed: write the value out in full")
        if isinstance(event, yaml.ScalarEvent) and _SURROGATE.search(event.value):
            raise YamlError(line, "invalid Unicode: a lone surrogate escape such as \\ud800")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise YamlError(line, f"more than {MAX_NODES} values in one document")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlError(line, f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except YamlError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:  # e.g. 2026-02-30, !!int x
            shown = f" {str(node.value)[:40]!r}" if isinstance(node, yaml.ScalarNode) else ""
            raise ConstructorError(None, None, f"invalid {node.tag.rsplit(':', 1)[-1]} value{shown}",
                                   node.start_mark) from exc

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > 32:
            raise YamlError(node.start_mark.line + 1, "integer out of range: integers must fit 64 bits")
        value: int = self.construct_yaml_int(node)
        if not -_INT64 <= value < _INT64:
            raise YamlError(node.start_mark.line + 1, "integer out of range: integers must fit 64 bits")
        return value


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse ``text``; return the data and a map from key/index paths to 1-based lines.

    Raises :class:`YamlError` for malformed YAML and for anything the bounds above refuse."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character or other unprintable input
        raise YamlError(text.count("\n", 0, exc.position) + 1, f"unacceptable character #x{exc.character:04x}") from exc
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(line, str(exc.problem or exc), mark.column + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise YamlError(1, str(exc)) from exc
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def load_yaml(text: str) -> Any:
    """The data of ``text`` (see :func:`load_with_lines`) when no line map is needed."""
    return load_with_lines(text)[0]


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
