"""The operator audit log: every change a person makes through the API (or a demo's scripted operator)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from api.tables import AuditLog
from knowledge.clock import as_utc


def record(conn: Connection, *, at: datetime, actor: str, action: str, target: str,
           detail: dict[str, Any] | None = None) -> None:
    """One audit row, in the caller's transaction (so it commits with the change it records)."""
    conn.execute(AuditLog.__table__.insert().values(at=as_utc(at), actor=actor, action=action, target=target,
                                                    detail=detail or {}))
