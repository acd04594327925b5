"""Batches inside one transaction: reads made once for many customers, writes made once for many.

A worker handles thousands of customers per transaction (an import's contacts, a day's pushes), and code written
for one customer at a time (graph nodes, event handlers) would read each customer's row several times and insert
each row on its own. Two helpers remove that cost without changing that code:

- :func:`cached_reads` keeps rows read by key (a customer, its tags, its facts) for the rest of the block. Writes
  cannot leave it stale: before any INSERT, UPDATE or DELETE of a table it caches, the entries of the keys the
  statement binds are dropped (all of that table's entries if it binds none of them), and a savepoint rollback
  drops everything.
- :func:`deferred_writes` lets a buffer of keyed inserts (``sop_graphs.effects.Effects``) accumulate across the
  block and be written once at its end; any statement that reads or writes one of the buffer's tables first
  writes what is pending, so nothing in the block can miss a row written earlier in it.

Both live in ``Connection.info`` for the duration of the block only; outside one, nothing changes.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.util import find_tables

_READS = "sopagent.cached_reads"
_WRITES = "sopagent.deferred_writes"
_TARGET = re.compile(r'\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
_MENTIONED = re.compile(r"\b(\w+)\b")
_installed: weakref.WeakSet[Engine] = weakref.WeakSet()
MISSING = object()  # ReadCache.get: nothing cached for that key


class ReadCache:
    """Rows read by (table, key) during one block: ``get`` returns :data:`MISSING` for what it does not hold."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[Any, Any]] = {}

    def get(self, table: str, key: Any) -> Any:
        return self._entries.get(table, {}).get(key, MISSING)

    def put(self, table: str, key: Any, value: Any) -> None:
        self._entries.setdefault(table, {})[key] = value

    def holds(self, table: str) -> bool:
        return bool(self._entries.get(table))

    def forget(self, table: str, keys: set[Any] | None = None) -> None:
        """Drop ``keys`` of ``table`` (all of the table's entries when None)."""
        entries = self._entries.get(table)
        if entries is None:
            return
        if keys is None:
            entries.clear()
        for key in keys or ():
            entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class Buffer(Protocol):
    """Writes that may wait: the tables they go to, whether any are waiting, and writing them."""

    tables: frozenset[str]

    def pending(self) -> bool: ...

    def flush(self, conn: Connection) -> None: ...


def reads(conn: Connection) -> ReadCache | None:
    """The cache of the :func:`cached_reads` block ``conn`` is in, if any."""
    return conn.info.get(_READS)


def read_through(conn: Connection, table: str, key: Any, load: Callable[[], Any]) -> Any:
    """``load()``, kept under (``table``, ``key``) for the rest of a :func:`cached_reads` block if ``conn`` is in one
    (the value is shared: callers hand out copies of mutable ones)."""
    cache = reads(conn)
    if cache is None:
        return load()
    value = cache.get(table, key)
    if value is MISSING:
        value = load()
        cache.put(table, key, value)
    return value


def deferred(conn: Connection) -> Buffer | None:
    """The buffer of the :func:`deferred_writes` block ``conn`` is in, if any."""
    return conn.info.get(_WRITES)


@contextmanager
def cached_reads(conn: Connection, preload: Callable[[ReadCache], None] | None = None) -> Iterator[ReadCache]:
    """Within the block, reads that consult :func:`reads` are made once per key; ``preload`` fills the cache with
    set-based queries first (one query for a whole batch of customers)."""
    _install(conn.engine)
    cache = ReadCache()
    outer = conn.info.get(_READS)
    conn.info[_READS] = cache
    try:
        if preload is not None:
            preload(cache)
        yield cache
    finally:
        if outer is None:
            conn.info.pop(_READS, None)
        else:
            conn.info[_READS] = outer


@contextmanager
def deferred_writes(conn: Connection, buffer: Buffer) -> Iterator[Buffer]:
    """Within the block, ``buffer`` collects writes (its owner checks :func:`deferred`); they are written at the end
    of the block, or before the first statement that touches one of its tables. An exception leaves them unwritten
    (the transaction is being rolled back anyway)."""
    _install(conn.engine)
    if conn.info.get(_WRITES) is not None:  # nested: the outer block writes everything
        yield conn.info[_WRITES]
        return
    conn.info[_WRITES] = buffer
    try:
        yield buffer
    except BaseException:
        conn.info.pop(_WRITES, None)
        raise
    conn.info.pop(_WRITES, None)
    buffer.flush(conn)


@contextmanager
def suspended(conn: Connection) -> Iterator[None]:
    """Statements inside run as if outside the :func:`deferred_writes` block (the buffer writing itself)."""
    buffer = conn.info.pop(_WRITES, None)
    try:
        yield
    finally:
        if buffer is not None:
            conn.info[_WRITES] = buffer


def _install(engine: Engine) -> None:
    if engine in _installed:
        return
    event.listen(engine, "before_execute", _write_pending)
    event.listen(engine, "before_cursor_execute", _forget_written)
    event.listen(engine, "rollback_savepoint", _forget_all)
    _installed.add(engine)


def _tables_of(statement: Any) -> set[str]:
    if isinstance(statement, ClauseElement) and not isinstance(statement, TextClause):
        return {t.name for t in find_tables(statement, include_crud=True, include_joins=True)
                if hasattr(t, "name")}
    return set(_MENTIONED.findall(statement.text if isinstance(statement, TextClause) else str(statement)))


def _write_pending(conn: Connection, statement: Any, *_args: Any) -> None:
    """Before a statement touches a table with deferred rows, write them (the buffer leaves the block while it
    writes, so its own inserts pass straight through)."""
    buffer: Buffer | None = conn.info.get(_WRITES)
    if buffer is None or not buffer.pending() or not (buffer.tables & _tables_of(statement)):
        return
    with suspended(conn):
        buffer.flush(conn)


def _bound_strings(parameters: Any) -> set[str]:
    sets = parameters if isinstance(parameters, list | tuple) and parameters and \
        isinstance(parameters[0], Mapping | list | tuple) else [parameters]
    found: set[str] = set()
    for params in sets:
        values = params.values() if isinstance(params, Mapping) else params or ()
        for value in values:
            if isinstance(value, str):
                found.add(value)
            elif isinstance(value, list):  # a column's values bound as one array (knowledge.pg_arrays)
                found.update(v for v in value if isinstance(v, str))
    return found


def _forget_written(conn: Connection, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
    cache: ReadCache | None = conn.info.get(_READS)
    if cache is None or (match := _TARGET.match(statement)) is None:
        if cache is not None and statement.lstrip()[:4].upper() == "WITH":  # a CTE may write anything
            cache.clear()
        return
    table = match.group(1).lower()
    if not cache.holds(table):
        return
    keys = _bound_strings(parameters)
    held = {key for key in keys if cache.get(table, key) is not MISSING}
    cache.forget(table, held or None)


def _forget_all(conn: Connection, *_args: Any) -> None:
    cache: ReadCache | None = conn.info.get(_READS)
    if cache is not None:
        cache.clear()
