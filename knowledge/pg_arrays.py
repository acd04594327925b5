"""PostgreSQL writes of many rows as one statement over column arrays (``unnest``).

An executemany, even through psycopg's pipeline, sends, binds and executes every row on its own: at a worker's
batch sizes that per-row work on both sides of the socket was the largest cost left in a pump (``bench/scale.py
--profile``). Here each column travels as one array parameter and the server expands them with ``unnest``: one
statement, one plan, one round trip for the batch. The arrays are sent in binary: psycopg's text format escapes
every element with a regular expression, which cost more than the executemany it replaced.

Values go through each column's own SQLAlchemy bind processing (JSON serialised, timestamps to UTC) and Python
defaults (a row's shard from its customer), so a row written here reads back exactly as one written by the ORM.
SQLite has no arrays; :mod:`knowledge.db` keeps executemany there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Connection, Dialect


class _RowContext:
    """What a context-sensitive column default reads: the row being inserted."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self._row = row

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> Mapping[str, Any]:
        return self._row


def _default(column: Column[Any]) -> Callable[[Mapping[str, Any]], Any] | None:
    default = column.default
    if default is None or not (default.is_scalar or default.is_callable):
        return None
    if default.is_scalar:
        value = default.arg  # type: ignore[attr-defined]
        return lambda _row: value
    call = default.arg  # type: ignore[attr-defined]  # SQLAlchemy wraps every callable default to take a context
    return lambda row: call(_RowContext(row))


@cache
def _plan(dialect: Dialect, table: Table, given: frozenset[str], defaults: bool,
          ) -> tuple[list[Column[Any]], list[Any], list[Any], str]:
    """The columns bound for rows carrying ``given`` keys (plus, with ``defaults``, the ones with a Python
    default), each one's bind processor and default, and their arrays as an ``unnest`` with its casts."""
    columns = [c for c in table.columns if c.name in given or (defaults and _default(c) is not None)]
    processors = [c.type._cached_bind_processor(dialect) for c in columns]
    fills = [_default(c) if defaults else None for c in columns]
    arrays = ", ".join(f"%(c{i})b::{c.type.compile(dialect=dialect)}[]" for i, c in enumerate(columns))
    return columns, processors, fills, f"unnest({arrays})"


def _arrays(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], defaults: bool = True,
            ) -> tuple[list[Column[Any]], str, dict[str, list[Any]]]:
    columns, processors, fills, unnest = _plan(conn.dialect, table, frozenset(rows[0]), defaults)
    params: dict[str, list[Any]] = {}
    for i, (column, process, default) in enumerate(zip(columns, processors, fills, strict=True)):
        name = column.name
        if default is not None:
            values = [row[name] if name in row else default(row) for row in rows]
        else:
            values = [row[name] for row in rows]
        if process is not None:
            values = [None if v is None else process(v) for v in values]
        params[f"c{i}"] = values
    return columns, unnest, params


def insert_arrays(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, ignore: bool = False) -> int:
    """Insert ``rows`` (all with the same keys) in one statement; with ``ignore``, skip any that collide with a
    unique key (a row colliding with an earlier one of the same batch included). Returns how many were new."""
    columns, unnest, params = _arrays(conn, table, rows)
    names = ", ".join(f'"{c.name}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM {unnest}'
    return max(conn.exec_driver_sql(f"{sql} ON CONFLICT DO NOTHING" if ignore else sql, params).rowcount, 0)


def update_arrays(conn: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the other columns each row carries on the row of ``table`` whose ``key`` column equals the row's, in
    one statement (keys must not repeat: which of two would win is undefined)."""
    columns, unnest, params = _arrays(conn, table, rows, defaults=False)
    names = ", ".join(f'"{c.name}"' for c in columns)
    sets = ", ".join(f'"{c.name}" = v."{c.name}"' for c in columns if c.name != key)
    conn.exec_driver_sql(f'UPDATE "{table.name}" SET {sets} FROM {unnest} AS v({names}) '
                         f'WHERE "{table.name}"."{key}" = v."{key}"', params)
