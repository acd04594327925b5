"""Buffered writes of one unit of work, flushed with one executemany per table.

Every row carries a deterministic unique key, so flushing the same work twice (a crash and a
replay) inserts nothing new: that is what makes graph replays and worker restarts exactly-once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from knowledge.batching import deferred, suspended
from knowledge.clock import as_utc
from knowledge.db import insert_ignore, update_many
from knowledge.tables import TimelineEntry
from sop_graphs.tables import DueTouchpoint, Outbox, SopRun

_R = SopRun.__table__.c


class Effects:
    """Outbox rows, due touchpoints and timeline entries waiting to be written.

    Inside a ``knowledge.batching.deferred_writes`` block whose buffer is an ``Effects``, :meth:`flush` hands the
    rows to that buffer, which writes a whole batch's rows at once."""

    tables = frozenset({Outbox.__table__.name, DueTouchpoint.__table__.name, TimelineEntry.__table__.name,
                        SopRun.__table__.name})

    def __init__(self) -> None:
        self.outbox: list[dict[str, Any]] = []
        self.due: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.ended: set[str] = set()  # runs this unit of work ended: a batch must not act for them after
        self.marks: dict[str, dict[str, Any]] = {}  # run id → columns to set (deferred blocks only: mark_run)

    def send(self, *, key: str, action: str, customer_id: str, at: datetime, payload: dict[str, Any],
             run_id: str | None = None, sop_id: str | None = None, step_id: str | None = None,
             mode: str = "kf", touchpoint: str = "private", executor: str = "ai", marketing: bool = False,
             touch: str | None = None) -> None:
        self.outbox.append({
            "key": key, "action": action, "customer_id": customer_id, "run_id": run_id, "sop_id": sop_id,
            "step_id": step_id, "mode": mode, "touchpoint": touchpoint, "executor": executor,
            "marketing": marketing, "touch": touch, "payload": payload, "status": "pending",
            "not_before": as_utc(at), "created_at": as_utc(at), "sent_at": None, "defer_count": 0,
            "last_deferral": None,
        })

    def schedule(self, *, key: str, kind: str, due_at: datetime, run_id: str | None = None,
                 customer_id: str | None = None, sop_id: str | None = None, step_id: str | None = None,
                 payload: dict[str, Any] | None = None) -> None:
        self.due.append({
            "key": key, "kind": kind, "run_id": run_id, "customer_id": customer_id, "sop_id": sop_id,
            "step_id": step_id, "due_at": as_utc(due_at), "status": "pending", "payload": payload or {},
            "done_at": None,
        })

    def note(self, *, customer_id: str, at: datetime, kind: str, summary: str, run_id: str | None = None,
             key: str | None = None, detail: dict[str, Any] | None = None) -> None:
        self.timeline.append({"customer_id": customer_id, "at": as_utc(at), "kind": kind, "summary": summary,
                              "run_id": run_id, "key": key, "detail": detail or {}})

    def pending(self) -> bool:
        return bool(self.outbox or self.due or self.timeline or self.marks)

    def flush(self, conn: Connection) -> None:
        batch = deferred(conn)
        if isinstance(batch, Effects) and batch is not self:
            batch.outbox += self.outbox
            batch.due += self.due
            batch.timeline += self.timeline
            batch.ended |= self.ended
            for run_id, values in self.marks.items():
                batch.marks.setdefault(run_id, {}).update(values)
            self.outbox, self.due, self.timeline, self.marks = [], [], [], {}
            return
        outbox, due, timeline, marks = self.outbox, self.due, self.timeline, self.marks
        self.outbox, self.due, self.timeline, self.marks = [], [], [], {}
        with suspended(conn):  # this buffer's own writes (it may be the block's buffer)
            insert_ignore(conn, Outbox.__table__, outbox)
            insert_ignore(conn, DueTouchpoint.__table__, due)
            insert_ignore(conn, TimelineEntry.__table__, timeline)
            by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for run_id, values in marks.items():
                by_columns.setdefault(tuple(sorted(values)), []).append({"id": run_id, **values})
            for rows in by_columns.values():
                update_many(conn, SopRun.__table__, "id", rows)


def mark_run(conn: Connection, run_id: str, **values: Any) -> None:
    """Set columns of a run row: at once, or inside a ``deferred_writes`` block of an :class:`Effects` with the
    block's other writes (a run's marks merge, the last value of a column winning, as applying them in order
    would; anything reading the run table in the block first writes them)."""
    batch = deferred(conn)
    if isinstance(batch, Effects):
        batch.marks.setdefault(run_id, {}).update(values)
        return
    conn.execute(update(SopRun.__table__).where(_R.id == run_id).values(**values))
