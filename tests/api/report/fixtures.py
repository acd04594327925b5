"""A hand-made shop day (2026-11-25, Asia/Shanghai) whose metrics are counted by hand in the tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

import api.tables  # noqa: F401  (registers the report tables)
from agent.runtime import load_valid_library
from agent.tables import InboundEvent, Message
from knowledge.db import init_db, make_engine
from knowledge.settings import Settings
from knowledge.tables import Customer, TimelineEntry
from sop_graphs.loader import Library
from sop_graphs.tables import CouponLedger, EmployeeTask, Outbox, SopRun

DAY = date(2026, 11, 25)
TZ = "Asia/Shanghai"


def local(hour: int, minute: int = 0, days: int = 0) -> datetime:
    """UTC instant of shop-local ``hour:minute`` on DAY (+ ``days``)."""
    return datetime(2026, 11, 25, hour, minute, tzinfo=UTC) - timedelta(hours=8) + timedelta(days=days)


def library() -> Library:
    return load_valid_library(Settings(embedder="hash").library_path)


class Shop:
    """Rows written straight into a fresh database."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine: Engine = make_engine(f"sqlite:///{tmp_path / 'shop.db'}")
        init_db(self.engine)
        self._ids = 0

    def _next(self) -> int:
        self._ids += 1
        return self._ids

    def insert(self, table: Any, **row: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.__table__.insert().values(**row))

    def customer(self, cid: str, at: datetime, *, channel: str | None = None, owner: str = "",
                 unsubscribed_at: datetime | None = None) -> None:
        self.insert(Customer, id=cid, name=f"客户{cid}", added_at=at, channel_code=channel, owner=owner, stage="active",
                    attributes={}, unsubscribed_at=unsubscribed_at)

    def run(self, run_id: str, cid: str, sop_id: str, started: datetime, *, version: int = 1, status: str = "active",
            ended: datetime | None = None, reason: str | None = None, step: str | None = None) -> None:
        self.insert(SopRun, id=run_id, sop_id=sop_id, sop_version=version, family="x", customer_id=cid, status=status,
                    started_at=started, ended_at=ended, exit_reason=reason, current_step=step)

    def action(self, cid: str, at: datetime, *, run_id: str | None = None, sop_id: str | None = None,
               step_id: str | None = None, action: str = "message", status: str = "sent", mode: str = "kf",
               touchpoint: str = "private", executor: str = "ai", marketing: bool = False, key: str | None = None,
               sent_at: datetime | None = None) -> None:
        n = self._next()
        self.insert(Outbox, key=key or f"k{n}", action=action, customer_id=cid, run_id=run_id, sop_id=sop_id,
                    step_id=step_id, mode=mode, touchpoint=touchpoint, executor=executor, marketing=marketing,
                    payload={"text": "x"}, status=status, not_before=at, created_at=at,
                    sent_at=(sent_at or at) if status == "sent" else None)

    def note(self, cid: str, at: datetime, kind: str, *, key: str | None = None, run_id: str | None = None,
             detail: dict[str, Any] | None = None, summary: str = "") -> None:
        n = self._next()
        self.insert(TimelineEntry, customer_id=cid, at=at, kind=kind, summary=summary, run_id=run_id,
                    key=key or f"t{n}", detail=detail or {})

    def message(self, cid: str, at: datetime, text: str, *, direction: str = "in", key: str | None = None,
                meta: dict[str, Any] | None = None) -> str:
        n = self._next()
        key = key or f"{direction}/m{n}"
        self.insert(Message, key=key, customer_id=cid, direction=direction, text=text, at=at, meta=meta or {})
        return key

    def event(self, cid: str, at: datetime, kind: str, payload: dict[str, Any]) -> None:
        self.insert(InboundEvent, key=f"e{self._next()}", customer_id=cid, kind=kind, payload=payload, received_at=at,
                    status="done")

    def task(self, cid: str, created: datetime, *, kind: str = "handoff", due: datetime | None = None,
             done_at: datetime | None = None) -> None:
        self.insert(EmployeeTask, key=f"task{self._next()}", customer_id=cid, assignee="advisor", kind=kind,
                    title="t", content={}, due_at=due or created + timedelta(minutes=30),
                    status="done" if done_at else "open", created_at=created, done_at=done_at)

    def coupon(self, cid: str, at: datetime, code: str, campaign: str = "welcome_10") -> None:
        self.insert(CouponLedger, customer_id=cid, campaign_id=campaign, code=code, issued_at=at)
