"""Buffered writes of one unit of work, flushed with one statement per table.

Every row carries a deterministic unique key, so flushing the same work twice (a crash and a
replay) inserts nothing new: that is what makes graph replays and worker restarts exactly-once.

Coupons wait here too: a coupon's ledger row (one per customer and campaign) and its send are written together,
the ledger first; a ledger row that another run's row beat to the unique key takes its send out of the flush and
leaves a "coupon_skipped" timeline entry instead, as issuing it one at a time would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from knowledge.batching import deferred, suspended
from knowledge.clock import as_utc
from knowledge.db import any_of, insert_ignore, run_in, update_many
from knowledge.tables import TimelineEntry
from sop_graphs.tables import CouponLedger, DueTouchpoint, Outbox, SopRun

_R = SopRun.__table__.c
_L = CouponLedger.__table__.c
_OWNERS_IN = select(_L.customer_id, _L.campaign_id, _L.run_id).where(any_of(_L.customer_id))


@dataclass(frozen=True)
class PendingCoupon:
    """A coupon waiting to be issued: its ledger row, the key of its send, and the timeline row that replaces the
    send if another run holds the customer's coupon of that campaign by the time the ledger row is written."""

    ledger: dict[str, Any]
    send_key: str
    skipped: dict[str, Any]

    @property
    def campaign(self) -> str:
        return str(self.ledger["campaign_id"])


class Effects:
    """Outbox rows, due touchpoints and timeline entries waiting to be written.

    Inside a ``knowledge.batching.deferred_writes`` block whose buffer is an ``Effects``, :meth:`flush` hands the
    rows to that buffer, which writes a whole batch's rows at once."""

    tables = frozenset({Outbox.__table__.name, DueTouchpoint.__table__.name, TimelineEntry.__table__.name,
                        SopRun.__table__.name, CouponLedger.__table__.name})

    def __init__(self) -> None:
        self.outbox: list[dict[str, Any]] = []
        self.due: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.ended: set[str] = set()  # runs this unit of work ended: a batch must not act for them after
        self.marks: dict[str, dict[str, Any]] = {}  # run id → columns to set (deferred blocks only: mark_run)
        self.coupons: list[PendingCoupon] = []

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
        self.timeline.append(_timeline_row(customer_id=customer_id, at=at, kind=kind, summary=summary, run_id=run_id,
                                           key=key, detail=detail))

    def issue(self, *, customer_id: str, campaign_id: str, code: str, run_id: str, at: datetime, send_key: str,
              skipped_key: str, skipped_summary: str) -> None:
        """A coupon's ledger row; the send keyed ``send_key`` (made by the caller) goes out only if the row is
        this run's once written, else a "coupon_skipped" entry keyed ``skipped_key`` says why."""
        self.coupons.append(PendingCoupon(
            ledger={"customer_id": customer_id, "campaign_id": campaign_id, "code": code, "run_id": run_id,
                    "issued_at": as_utc(at)},
            send_key=send_key,
            skipped=_timeline_row(customer_id=customer_id, at=at, kind="coupon_skipped", summary=skipped_summary,
                                  run_id=run_id, key=skipped_key)))

    def issuing(self, campaign_id: str) -> int:
        """Coupons of ``campaign_id`` waiting here (a budget counts them with the ledger's rows)."""
        return sum(c.campaign == campaign_id for c in self.coupons)

    def pending(self) -> bool:
        return bool(self.outbox or self.due or self.timeline or self.marks or self.coupons)

    def flush(self, conn: Connection) -> None:
        batch = deferred(conn)
        if isinstance(batch, Effects) and batch is not self:
            batch.outbox += self.outbox
            batch.due += self.due
            batch.timeline += self.timeline
            batch.ended |= self.ended
            batch.coupons += self.coupons
            for run_id, values in self.marks.items():
                batch.marks.setdefault(run_id, {}).update(values)
            self.outbox, self.due, self.timeline, self.marks, self.coupons = [], [], [], {}, []
            return
        outbox, due, timeline, marks, coupons = self.outbox, self.due, self.timeline, self.marks, self.coupons
        self.outbox, self.due, self.timeline, self.marks, self.coupons = [], [], [], {}, []
        with suspended(conn):  # this buffer's own writes (it may be the block's buffer)
            lost = _write_ledger(conn, coupons)
            if lost:
                withdrawn = {c.send_key for c in lost}
                outbox = [row for row in outbox if row["key"] not in withdrawn]
                timeline = timeline + [c.skipped for c in lost]
            insert_ignore(conn, Outbox.__table__, outbox)
            insert_ignore(conn, DueTouchpoint.__table__, due)
            insert_ignore(conn, TimelineEntry.__table__, timeline)
            by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for run_id, values in marks.items():
                by_columns.setdefault(tuple(sorted(values)), []).append({"id": run_id, **values})
            for rows in by_columns.values():
                update_many(conn, SopRun.__table__, "id", rows)


def _timeline_row(*, customer_id: str, at: datetime, kind: str, summary: str, run_id: str | None,
                  key: str | None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"customer_id": customer_id, "at": as_utc(at), "kind": kind, "summary": summary, "run_id": run_id,
            "key": key, "detail": detail or {}}


def _write_ledger(conn: Connection, coupons: list[PendingCoupon]) -> list[PendingCoupon]:
    """Insert the coupons' ledger rows; returns those another run's row holds (a replay of this run's own coupon
    finds its row and is not lost: its send is the same keyed row as before)."""
    if not coupons or insert_ignore(conn, CouponLedger.__table__, [c.ledger for c in coupons]) == len(coupons):
        return []
    owners = {(cid, campaign): run_id for cid, campaign, run_id in
              run_in(conn, _OWNERS_IN, list({c.ledger["customer_id"] for c in coupons}))}
    return [c for c in coupons if owners.get((c.ledger["customer_id"], c.campaign)) != c.ledger["run_id"]]


def mark_run(conn: Connection, run_id: str, **values: Any) -> None:
    """Set columns of a run row: at once, or inside a ``deferred_writes`` block of an :class:`Effects` with the
    block's other writes (a run's marks merge, the last value of a column winning, as applying them in order
    would; anything reading the run table in the block first writes them)."""
    batch = deferred(conn)
    if isinstance(batch, Effects):
        batch.marks.setdefault(run_id, {}).update(values)
        return
    conn.execute(update(SopRun.__table__).where(_R.id == run_id).values(**values))
