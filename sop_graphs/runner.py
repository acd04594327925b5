"""Starts and resumes SOP run graphs on the checkpointer, one thread per (customer, SOP run).

Resumes are token-checked: a due row or answer whose token is not what the graph awaits (already
consumed before a crash, or superseded) is a no-op. Graphs persist on exit (durability="exit"):
a crash mid-invocation replays from the last checkpoint, and the nodes' keyed writes make that safe.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from knowledge.db import sqlite_pragmas
from sop_graphs.compiler import compile_sop
from sop_graphs.deps import Deps, Origin, RunContext


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
    saver.setup()
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

    @staticmethod
    def _config(run_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": run_id}}

    def start(self, sop_id: str, run_id: str, customer_id: str, origin: Origin, *, fresh: bool = False) -> bool:
        """Run a new run's graph to its first pause; False if the thread had already started.

        ``fresh``: the run row was created just now, so no thread can exist yet and the check is skipped.
        """
        graph = self.graphs[sop_id]
        if not fresh and graph.get_state(self._config(run_id)).values:
            self._recover(sop_id, run_id, origin)
            return False
        initial = {"run_id": run_id, "customer_id": customer_id, "visits": {}, "answers": {}, "attempts": {},
                   "route": ""}
        graph.invoke(initial, self._config(run_id), context=RunContext(self.deps, origin), durability="exit")
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
