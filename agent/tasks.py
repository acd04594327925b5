"""Employee tasks as people work them: completing one is a customer event SOPs can wait for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from agent.inbound import submit
from knowledge.clock import as_utc
from sop_graphs.customers import BROADCAST
from sop_graphs.deps import Deps
from sop_graphs.tables import EmployeeTask

_K = EmployeeTask.__table__.c


def mark_done(conn: Connection, task_id: int, at: datetime) -> dict[str, Any] | None:
    """Mark one task done at ``at`` in the caller's transaction; the task row, or None for an unknown id. A task
    already done keeps its first completion time."""
    if conn.execute(update(EmployeeTask.__table__).where(_K.id == task_id).values(
            status="done", done_at=func.coalesce(_K.done_at, as_utc(at)))).rowcount == 0:
        return None
    return dict(conn.execute(select(EmployeeTask.__table__).where(_K.id == task_id)).mappings().one())


def announce_done(deps: Deps, task: dict[str, Any]) -> None:
    """After the task's transaction: runs of its customer waiting for ``task_completed`` go on (once per task:
    the inbound key is the task's id, so a repeated completion is a duplicate delivery)."""
    if task.get("customer_id") and task["customer_id"] != BROADCAST:  # a group or moments task waits for no one
        submit(deps, key=f"task-done/{task['id']}", customer_id=task["customer_id"], kind="task_completed",
               payload={"task_id": task["id"], "title": task["title"]})
