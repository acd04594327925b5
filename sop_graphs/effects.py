"""Buffered writes of one unit of work, flushed with one executemany per table.

Every row carries a deterministic unique key, so flushing the same work twice (a crash and a
replay) inserts nothing new: that is what makes graph replays and worker restarts exactly-once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from knowledge.clock import as_utc
from knowledge.db import insert_ignore
from knowledge.tables import TimelineEntry
from sop_graphs.tables import DueTouchpoint, Outbox


class Effects:
    """Outbox rows, due touchpoints and timeline entries waiting to be written."""

    def __init__(self) -> None:
        self.outbox: list[dict[str, Any]] = []
        self.due: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.ended: set[str] = set()  # runs this unit of work ended: a batch must not act for them after

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

    def flush(self, conn: Connection) -> None:
        insert_ignore(conn, Outbox.__table__, self.outbox)
        insert_ignore(conn, DueTouchpoint.__table__, self.due)
        insert_ignore(conn, TimelineEntry.__table__, self.timeline)
        self.outbox, self.due, self.timeline = [], [], []
