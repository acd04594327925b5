"""Starts and resumes SOP run graphs on the checkpointer, one thread per (customer, SOP run).

Resumes are token-checked: a due row or answer whose token is not what the graph awaits (already
consumed before a crash, or superseded) is a no-op. Graphs persist on exit (durability="exit"):
a crash mid-invocation replays from the last checkpoint, and the nodes' keyed writes make that safe.

Enrolments in bulk (an import of a million contacts) start without LangGraph: :meth:`GraphRunner.start_many` runs
each new run's nodes up to its first pause as plain functions inside the caller's one transaction, and keeps the
state the thread would hold there in a ``PendingThread`` row. The thread is written from it the first time the
run is resumed (most never are: their questions time out into graph-free tails, or they never answer), so a start
costs the nodes' own SQL, not a graph invocation and its checkpoints.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from knowledge.batching import cached_reads, deferred_writes
from knowledge.db import insert_ignore, sqlite_pragmas
from sop_graphs.compiler import compile_sop
from sop_graphs.customers import preload
from sop_graphs.deps import Deps, Origin, RunContext
from sop_graphs.effects import Effects
from sop_graphs.nodes import AWAIT, Node, make_nodes
from sop_graphs.spec import SopSpec
from sop_graphs.tables import PendingThread

_P = PendingThread.__table__.c
SETUP_LOCK = 7_241_902  # pg_advisory_lock key of the checkpointer's table set-up (migrations use 7_241_901)


@dataclass(frozen=True)
class Start:
    """A new run to start: its SOP, id, customer and why."""

    sop_id: str
    run_id: str
    customer_id: str
    origin: Origin


class _Within:
    """The engine as nodes run by :meth:`GraphRunner.start_many` see it: every ``begin``/``connect`` is the
    caller's open transaction, so a batch of starts commits (or, crashed, vanishes) as one."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        yield self._conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        yield self._conn


def _nodes(spec: SopSpec) -> dict[str, Node]:
    return {name: node for index in range(len(spec.steps)) for name, node in make_nodes(spec, index)}


def _after(spec: SopSpec, name: str, state: dict[str, Any]) -> str:
    """The node the compiled graph goes to after ``name`` (sop_graphs/compiler.py's edges)."""
    step = spec.steps_by_id[name]
    if step.kind == "chat" or (step.kind == "wait" and not getattr(step, "timed", False)):
        return name + AWAIT
    return state.get("route") or END


def sqlite_checkpointer(path: Path | str, cache_mib: int = 64) -> SqliteSaver:
    """SqliteSaver on its own connection with the shared SQLite pragmas."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    sqlite_pragmas(conn, cache_mib)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def postgres_checkpointer(url: str, max_connections: int = 10) -> BaseCheckpointSaver:
    """LangGraph's PostgresSaver on a psycopg pool (autocommit, dict rows, no prepared statements, as it needs),
    its tables created on first use. ``url`` is the SQLAlchemy URL of the shop's database."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = ConnectionPool(conninfo, max_size=max_connections, open=True, kwargs={
        "autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    saver = PostgresSaver(pool)  # type: ignore[arg-type]
    with pool.connection() as lock:  # processes starting together set the tables up one at a time
        lock.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
        try:
            saver.setup()
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
    return saver


def checkpointer_for(db_url: str, sqlite_path: Path | str, cache_mib: int = 64) -> BaseCheckpointSaver:
    """Graph threads live beside the shop's data: in PostgreSQL when the database is, else in a SQLite file."""
    if db_url.startswith("postgresql"):
        return postgres_checkpointer(db_url)
    return sqlite_checkpointer(sqlite_path, cache_mib)


class GraphRunner:
    """Holds the compiled graph of every SOP and drives their threads."""

    def __init__(self, deps: Deps, checkpointer: BaseCheckpointSaver) -> None:
        self.deps = deps
        self.checkpointer = checkpointer
        self.graphs: dict[str, CompiledStateGraph] = {
            sop_id: compile_sop(spec, checkpointer) for sop_id, spec in deps.library.sops.items()
        }
        self.nodes: dict[str, dict[str, Node]] = {sop_id: _nodes(spec) for sop_id, spec in deps.library.sops.items()}

    def replace(self, spec: SopSpec) -> None:
        """Run ``spec`` from now on: compile its graph once, swap it in."""
        self.graphs[spec.id] = compile_sop(spec, self.checkpointer)
        self.nodes[spec.id] = _nodes(spec)

    @staticmethod
    def _config(run_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": run_id}}

    def start(self, sop_id: str, run_id: str, customer_id: str, origin: Origin, *, fresh: bool = False) -> bool:
        """Run a new run's graph to its first pause; False if the thread had already started.

        ``fresh``: the run row was created just now, so no thread can exist yet and the check is skipped.
        """
        graph = self.graphs[sop_id]
        if not fresh and (self._materialise(sop_id, run_id) or graph.get_state(self._config(run_id)).values):
            self._recover(sop_id, run_id, origin)
            return False
        initial = {"run_id": run_id, "customer_id": customer_id, "visits": {}, "answers": {}, "attempts": {},
                   "route": ""}
        graph.invoke(initial, self._config(run_id), context=RunContext(self.deps, origin), durability="exit")
        return True

    def start_many(self, conn: Connection, starts: Sequence[Start]) -> None:
        """Run new runs to their first pause inside ``conn``'s transaction, as the graph would, without LangGraph:
        each node is the compiled graph's own function, called with a context whose engine is ``conn``; where a
        run pauses (or ends) its state is kept as a ``PendingThread`` row, written as the thread on first resume."""
        if not starts:
            return
        within = dataclasses.replace(self.deps, engine=cast(Engine, _Within(conn)))
        pending = []
        # the batch's customers, tags and facts read in three queries; the nodes' rows written at the end, one
        # statement per table for the batch (writes the nodes make to those tables keep both exact)
        with cached_reads(conn, lambda cache: preload(conn, cache, [s.customer_id for s in starts])), \
                deferred_writes(conn, Effects()):
            for start in starts:
                pending += self._to_first_pause(within, start)
        insert_ignore(conn, PendingThread.__table__, pending)

    def _to_first_pause(self, within: Deps, start: Start) -> list[dict[str, Any]]:
        """Run one new run's nodes to its first pause; the PendingThread row of its state there (none if it ended)."""
        spec = self.deps.library.sops[start.sop_id]
        nodes = self.nodes[start.sop_id]
        runtime = Runtime(context=RunContext(within, start.origin))
        state: dict[str, Any] = {"run_id": start.run_id, "customer_id": start.customer_id, "visits": {},
                                 "answers": {}, "attempts": {}, "route": ""}
        name = spec.steps[0].id
        while True:
            state.update(nodes[name](state, runtime))  # type: ignore[arg-type]
            following = _after(spec, name, state)
            if following == END or following.endswith(AWAIT):
                break
            name = following
        if following == END:
            return []
        kind, data = self.checkpointer.serde.dumps_typed(state)
        return [{"run_id": start.run_id, "sop_id": start.sop_id, "as_node": name, "state_type": kind,
                 "state": data}]

    def _materialise(self, sop_id: str, run_id: str) -> bool:
        """Write the thread of a run started by :meth:`start_many`, if it has none yet; True if it had to."""
        with self.deps.engine.connect() as conn:
            row = conn.execute(select(_P.as_node, _P.state_type, _P.state).where(_P.run_id == run_id)).first()
        if row is None:
            return False
        config = self._config(run_id)
        graph = self.graphs[sop_id]
        if not graph.get_state(config).values:  # a crash after the write and before the delete: written already
            graph.update_state(config, self.checkpointer.serde.loads_typed((row.state_type, bytes(row.state))),
                               as_node=row.as_node)
        with self.deps.engine.begin() as conn:
            conn.execute(PendingThread.__table__.delete().where(_P.run_id == run_id))
        return True

    def waiting_tokens(self, sop_id: str, run_id: str) -> list[str]:
        snapshot = self.graphs[sop_id].get_state(self._config(run_id))
        return [i.value.get("token") for i in snapshot.interrupts if isinstance(i.value, dict)]

    def _recover(self, sop_id: str, run_id: str, origin: Origin) -> list[str]:
        """Tokens the thread awaits, after continuing a thread left with pending tasks but no interrupt.

        A process killed between the checkpointer's checkpoint write and its pending-writes write
        leaves exactly that; re-running the pending node is safe (keyed writes) and re-raises its interrupt.
        """
        graph = self.graphs[sop_id]
        self._materialise(sop_id, run_id)
        snapshot = graph.get_state(self._config(run_id))
        if snapshot.next and not snapshot.interrupts:
            graph.invoke(None, self._config(run_id), context=RunContext(self.deps, origin), durability="exit")
            return self.waiting_tokens(sop_id, run_id)
        return [i.value.get("token") for i in snapshot.interrupts if isinstance(i.value, dict)]

    def resume(self, sop_id: str, run_id: str, value: dict[str, Any], origin: Origin) -> bool:
        """Resume the run with ``value`` if it awaits ``value['token']``; False if stale."""
        if sop_id not in self.graphs or value.get("token") not in self._recover(sop_id, run_id, origin):
            return False
        self.graphs[sop_id].invoke(Command(resume=value), self._config(run_id),
                                   context=RunContext(self.deps, origin), durability="exit")
        return True
