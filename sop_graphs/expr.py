"""A small, safe condition language for branch steps.

Python-like syntax parsed with :mod:`ast` and interpreted by a whitelist walker — never ``eval``.
Examples: ``'敏感肌' in tags``, ``answers.budget >= 300 and stage == 'new'``,
``not ('已购' in tags) or orders > 0``.
Names: ``tags`` (set), ``stage`` (str), ``answers`` / ``profile`` (attribute access, missing → None),
``events`` (set of customer events seen), ``orders`` (int), ``days_since_added`` (int).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NAMES = frozenset({"tags", "stage", "answers", "profile", "events", "orders", "days_since_added"})
_RECORDS = frozenset({"answers", "profile"})
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}


class ExprError(ValueError):
    """An expression that is not valid in the condition language."""


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``tag_literals`` are the strings tested against ``tags``."""

    source: str
    tree: ast.Expression
    tag_literals: frozenset[str] = field(default_factory=frozenset)
    fields: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def evaluate(self, env: Mapping[str, Any]) -> bool:
        return bool(_eval(self.tree.body, env))


def parse_condition(source: str) -> Condition:
    """Parse and check ``source``; raises :class:`ExprError` with a plain reason."""
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse condition {source!r}: {exc.msg}") from exc
    tags: set[str] = set()
    fields: set[tuple[str, str]] = set()
    _check(tree.body, tags, fields)
    return Condition(source, tree, frozenset(tags), frozenset(fields))


def _check(node: ast.AST, tags: set[str], fields: set[tuple[str, str]]) -> None:
    match node:
        case ast.BoolOp(values=values):
            for value in values:
                _check(value, tags, fields)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            _check(operand, tags, fields)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            if any(type(op) not in _COMPARE for op in ops):
                raise ExprError("only ==, !=, <, <=, >, >=, in and not in compare values")
            for side in (left, *comparators):
                _check(side, tags, fields)
            for op, right in zip(ops, comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn) and _is_name(right, "tags"):
                    if not isinstance(left, ast.Constant) or not isinstance(left.value, str):
                        raise ExprError("test tags with a quoted tag name: '敏感肌' in tags")
                    tags.add(left.value)
        case ast.Name(id=name):
            if name not in NAMES:
                raise ExprError(f"unknown name {name!r}; known: {', '.join(sorted(NAMES))}")
            if name in _RECORDS:
                raise ExprError(f"use {name}.<field>, not {name} alone")
        case ast.Attribute(value=ast.Name(id=record), attr=attr) if record in _RECORDS:
            fields.add((record, attr))
        case ast.Constant(value=value) if isinstance(value, str | int | float | bool) or value is None:
            pass
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            for elt in elts:
                if not isinstance(elt, ast.Constant):
                    raise ExprError("lists may hold only literal values")
        case _:
            raise ExprError(f"{type(node).__name__} is not allowed in conditions")


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    match node:
        case ast.BoolOp(op=ast.And(), values=values):
            return all(_eval(v, env) for v in values)
        case ast.BoolOp(op=ast.Or(), values=values):
            return any(_eval(v, env) for v in values)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _eval(operand, env)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _eval(left, env)
            for op, right_node in zip(ops, comparators, strict=True):
                right = _eval(right_node, env)
                try:
                    if not _COMPARE[type(op)](current, right):
                        return False
                except TypeError:
                    return False  # e.g. None >= 300: an unanswered question matches nothing
                current = right
            return True
        case ast.Name(id=name):
            return env.get(name)
        case ast.Attribute(value=ast.Name(id=record), attr=attr):
            return (env.get(record) or {}).get(attr)
        case ast.Constant(value=value):
            return value
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(e, env) for e in elts]
    raise ExprError(f"{type(node).__name__} is not allowed in conditions")
