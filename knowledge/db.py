"""Database engine creation and portable write helpers (SQLite by default, PostgreSQL at scale)."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy import ARRAY, Boolean, ColumnElement, Row, Table, bindparam, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import SQLModel, create_engine

from knowledge.pg_arrays import insert_arrays, update_arrays

SQLITE_BUSY_SECONDS = 30.0  # how long a writer waits for the database before it gives up


def sqlite_pragmas(dbapi_conn: Any, cache_mib: int = 64) -> None:
    """WAL, synchronous=NORMAL and a page cache big enough that hot index pages stay in memory.

    The default 2 MiB cache makes every insert into a large unique index a read syscall, which is
    what made the scheduler slow down as the customer base grew.
    """
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
    cursor.close()


class WriteGate:
    """First come, first served among one process's SQLite writers.

    SQLite has one writer at a time, and a writer that finds the database locked polls (its busy handler
    sleeps up to 100 ms between looks): a pump writing turns back to back can starve an operator's one-row
    write for seconds. The gate queues the process's writers in arrival order instead, so a write waits only
    for the transactions ahead of it, each a few milliseconds. A connection takes it where pysqlite opens the
    write transaction (its first INSERT/UPDATE/DELETE) and gives it back at commit or rollback. Waiting longer
    than ``timeout`` raises, as SQLite's own busy timeout would.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._held = False
        self._queue: deque[threading.Event] = deque()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def acquire(self) -> None:
        with self._lock:
            if not self._held and not self._queue:
                self._held = True
                return
            turn = threading.Event()
            self._queue.append(turn)
        if turn.wait(self.timeout):
            return  # handed over by the previous writer
        with self._lock:
            if turn.is_set():
                return
            self._queue.remove(turn)
        raise sqlalchemy.exc.OperationalError("write gate", None,
                                              Exception(f"database is locked (waited {self.timeout:g} s to write)"))

    def release(self) -> None:
        with self._lock:
            if self._queue:
                self._queue.popleft().set()  # ownership passes straight to the next in line
            else:
                self._held = False


_WRITES = ("insert", "update", "delete", "replace")
_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: Engine) -> WriteGate | None:
    """The gate of a SQLite engine made by :func:`make_engine` (None for PostgreSQL: its writers lock rows)."""
    return _GATES.get(engine)


def _gate_writes(engine: Engine, timeout: float) -> None:
    gate = WriteGate(timeout)
    _GATES[engine] = gate

    @event.listens_for(engine, "before_cursor_execute")
    def _take(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not conn.info.get("gated") and statement.lstrip()[:7].lower().startswith(_WRITES):
            gate.acquire()
            conn.info["gated"] = True

    def _give(conn: Connection) -> None:
        if conn.info.pop("gated", False):
            gate.release()

    event.listen(engine, "commit", _give)
    event.listen(engine, "rollback", _give)


def make_engine(url: str, cache_mib: int = 64) -> Engine:
    """An engine; SQLite files get :func:`sqlite_pragmas`, a busy timeout and a :class:`WriteGate`."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                    "timeout": SQLITE_BUSY_SECONDS})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            sqlite_pragmas(dbapi_conn, cache_mib)

        _gate_writes(engine, SQLITE_BUSY_SECONDS)
        return engine
    # executemany through psycopg's pipeline (one statement parsed once, rows bound to it) rather than
    # SQLAlchemy's "insertmanyvalues" (one giant INSERT ... VALUES text per page, parsed by psycopg each time):
    # `bench/scale.py --profile` showed that parse at a sixth of a worker's time
    return create_engine(url, pool_pre_ping=True, use_insertmanyvalues=False)


T = TypeVar("T")
IN_CHUNK = 500  # values per ``IN (...)`` list: well under SQLite's bound-parameter limit


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size``, for ``IN`` lists and batched statements."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class AnyOf(ColumnElement[bool]):
    """``column IN (:values)``, the list bound at execution; on PostgreSQL ``column = ANY(:values)`` with the list
    sent as one binary array. An expanded ``IN`` list is a new statement text for every length, which psycopg
    parses anew each time: at a worker's 500-value lists that parse was a tenth of a pump (``bench/scale.py
    --profile``)."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]
    _is_implicitly_boolean = True  # a predicate: never rendered as ``... = 1`` where booleans are integers
    type = Boolean()

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column


@compiles(AnyOf)
def _in_list(element: AnyOf, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column.in_(bindparam("values", expanding=True)), **kw))


@compiles(AnyOf, "postgresql")
def _any_array(element: AnyOf, compiler: Any, **kw: Any) -> str:
    array = compiler.process(bindparam("values", type_=ARRAY(element.column.type)), **kw)
    if compiler.dialect.paramstyle == "pyformat":  # psycopg: %(values)b sends the array in binary
        array = array.replace("%(values)s", "%(values)b")
    return f"{compiler.process(element.column, **kw)} = ANY({array})"


def any_of(column: Any) -> ColumnElement[bool]:
    """``column`` is one of ``:values``, the list bound at execution, so statements using it are built once
    (building a statement costs more than running it on SQLite). Run them with :func:`run_in`."""
    return AnyOf(column)


def run_in(conn: Connection, statement: Any, values: Iterable[Any], **params: Any) -> list[Row[Any]]:
    """Run a statement built with :func:`any_of` for any number of distinct ``values`` (bound a chunk
    at a time); returns its rows, none for an update or delete."""
    rows: list[Row[Any]] = []
    for chunk in in_chunks(list(dict.fromkeys(values))):
        result = conn.execute(statement, {"values": list(chunk), **params})
        if result.returns_rows:
            rows.extend(result.all())
    return rows


def init_db(engine: Engine) -> None:
    """Create every table registered on the SQLModel metadata (import the table modules first); an embedded
    database made by an older version gains the nullable columns and the indexes added since (the one kind of
    change made so far). PostgreSQL is migrated to the newest Alembic revision instead (knowledge/migrate.py)."""
    if engine.dialect.name == "postgresql":
        from knowledge.migrate import upgrade

        upgrade(engine)
        return
    SQLModel.metadata.create_all(engine)
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:
        inspector = sqlalchemy.inspect(conn)
        for table in SQLModel.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable and column.server_default is None:
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
            for index in table.indexes:
                index.create(conn, checkfirst=True)


@cache
def _insert_ignore_stmt(table: Table) -> Any:
    """SQLite's insert-or-skip (PostgreSQL goes through :func:`knowledge.pg_arrays.insert_arrays`)."""
    return sqlite.insert(table).on_conflict_do_nothing()


def insert_ignore(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows, skipping any that collide with a unique key; returns how many were new."""
    rows = list(rows)
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        return insert_arrays(conn, table, rows, ignore=True)
    # SQLite sums an executemany's row counts; SQLAlchemy keeps the count only when asked to
    result = conn.execute(_insert_ignore_stmt(table), rows,
                          execution_options={"preserve_rowcount": True})
    return max(result.rowcount, 0)


def insert_many(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows (all with the same keys): one statement over column arrays on PostgreSQL."""
    rows = list(rows)
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        insert_arrays(conn, table, rows)
        return
    conn.execute(table.insert(), rows)


def update_many(conn: Connection, table: Table, key: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Set the columns each row carries (all rows the same ones) on the row whose ``key`` column equals the
    row's; keys must not repeat. One statement over column arrays on PostgreSQL."""
    rows = list(rows)
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        update_arrays(conn, table, key, rows)
        return
    values = {c: bindparam(f"v_{c}") for c in rows[0] if c != key}
    conn.execute(table.update().where(table.c[key] == bindparam("k_")).values(values),
                 [{"k_": row[key], **{f"v_{c}": row[c] for c in values}} for row in rows])


def upsert(conn: Connection, table: Table, rows: list[Mapping[str, Any]]) -> None:
    """Insert rows, replacing the non-key columns of rows whose primary key already exists."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect.insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=keys,
                                      set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})
    conn.execute(stmt, rows)
