"""Order events from the shop: paid, shipped, delivered, refunded, cancelled.

Post-purchase SOPs react to them, so each one must reach the customer's turn queue exactly once, whether it comes
from the signed webhook (``POST /api/events/orders``), from an order import that moved an order's status, or from
both. An order's status implies the events it has passed through (a delivered order was paid and shipped); what
is emitted is what the new status implies and the old one did not, keyed ``order/<order_no>/<event>`` so a
second delivery, an out-of-order one or an import after the webhook adds nothing. Events go only to customers
the shop knows; the order is stored either way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from agent.tables import InboundEvent
from api.tables import OrderEventLog
from knowledge.clock import as_utc
from knowledge.db import in_chunks, insert_ignore, upsert
from knowledge.importer import StatusChange
from knowledge.tables import Customer, Shipment, ShopOrder, shipment_id

EventType = Literal["paid", "shipped", "delivered", "refunded", "cancelled"]
ORDER_EVENTS: tuple[str, ...] = ("paid", "shipped", "delivered", "refunded", "cancelled")  # the order they happen in
IMPLIED: dict[str, frozenset[str]] = {
    "pending_payment": frozenset(), "paid": frozenset({"paid"}), "shipped": frozenset({"paid", "shipped"}),
    "delivered": frozenset({"paid", "shipped", "delivered"}), "completed": frozenset({"paid", "shipped", "delivered"}),
    "returning": frozenset({"paid"}), "refunding": frozenset({"paid"}), "refunded": frozenset({"paid", "refunded"}),
    "cancelled": frozenset({"cancelled"}),
}
RANK = {"pending_payment": 0, "paid": 1, "shipped": 2, "delivered": 3, "completed": 4, "returning": 5,
        "refunding": 5, "refunded": 6, "cancelled": 6}
RECENT = timedelta(days=7)  # a new order in an import emits events only if it is this recent (not history)
SIGNATURE = "X-Sopagent-Signature"
TIMESTAMP = "X-Sopagent-Timestamp"


class ShipmentIn(BaseModel):
    tracking_no: str = Field(min_length=1, max_length=64)
    carrier: str = Field(default="", max_length=64)
    status: Literal["created", "picked_up", "in_transit", "out_for_delivery", "delivered", "exception",
                    "returned"] = "in_transit"
    eta: str | None = Field(default=None, max_length=64)
    events: list[dict[str, str]] = Field(default_factory=list, max_length=200)


class OrderIn(BaseModel):
    order_no: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=128, description="the WeCom external userid of the buyer")
    amount: float = Field(default=0, ge=0, le=10_000_000)
    items: list[dict[str, Any]] = Field(default_factory=list, max_length=200)
    address: str = Field(default="", max_length=500)
    created_at: datetime


class OrderEventIn(BaseModel):
    event_id: str = Field(min_length=1, max_length=128, description="the shop's id of this event: redeliveries "
                          "repeat it")
    type: EventType
    at: datetime = Field(description="when it happened at the shop")
    order: OrderIn
    shipment: ShipmentIn | None = None


@dataclass
class Applied:
    duplicate: bool = False
    customer_known: bool = True
    status: str = ""
    emitted: list[str] = field(default_factory=list)


class SignatureError(ValueError):
    """The delivery is not signed with the shop's secret, or its timestamp is too old or too new."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``: what the shop puts in the header."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: datetime,
           tolerance: timedelta) -> None:
    if not timestamp or not signature:
        raise SignatureError(f"missing {TIMESTAMP} or {SIGNATURE}")
    try:
        sent = datetime.fromtimestamp(int(timestamp), tz=as_utc(now).tzinfo)
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureError(f"{TIMESTAMP} must be Unix seconds") from exc
    if abs(as_utc(now) - sent) > tolerance:
        raise SignatureError(f"{TIMESTAMP} is more than {int(tolerance.total_seconds())} s from now (a replay?)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise SignatureError("signature does not match the body (HMAC-SHA256 of '<timestamp>.<body>')")


def newly_implied(before: str | None, after: str) -> list[str]:
    """The events ``after`` implies that ``before`` did not, in the order they happen."""
    new = IMPLIED.get(after, frozenset()) - IMPLIED.get(before or "", frozenset())
    return [e for e in ORDER_EVENTS if e in new]


def _emit(conn: Connection, order_no: str, customer_id: str, events: Iterable[str], *, amount: float,
          at: datetime, source: str) -> int:
    """Queue ``events`` for the customer's turns; returns how many were new (a key already queued is skipped)."""
    rows = [{"key": f"order/{order_no}/{event}", "customer_id": customer_id, "kind": "order",
             "payload": {"event": event, "order_id": order_no, "amount": amount, "source": source},
             "received_at": as_utc(at), "status": "pending"} for event in events]
    return insert_ignore(conn, InboundEvent.__table__, rows) if rows else 0


def _known(conn: Connection, customer_id: str) -> bool:
    return conn.execute(select(Customer.__table__.c.id).where(Customer.__table__.c.id == customer_id)).first() \
        is not None


def apply_event(engine: Engine, event: OrderEventIn, *, now: datetime) -> Applied:
    """Store the event's order (and parcel) and queue what it newly implies; a repeated ``event_id`` does nothing."""
    o = ShopOrder.__table__.c
    order = event.order
    with engine.begin() as conn:
        if insert_ignore(conn, OrderEventLog.__table__, [{
                "event_id": event.event_id, "type": event.type, "order_no": order.order_no,
                "customer_id": order.customer_id, "received_at": as_utc(now)}]) == 0:
            return Applied(duplicate=True)
        before = conn.execute(select(o.status).where(o.order_no == order.order_no)).scalar()
        after = event.type if RANK[event.type] >= RANK.get(before or "", -1) else str(before)  # never backwards
        upsert(conn, ShopOrder.__table__, [{"order_no": order.order_no, "customer_id": order.customer_id,
                                            "status": after, "amount": order.amount, "items": order.items,
                                            "address": order.address, "created_at": as_utc(order.created_at)}])
        if event.shipment is not None:
            s = event.shipment
            upsert(conn, Shipment.__table__, [{"id": shipment_id(order.order_no, s.tracking_no),
                                               "tracking_no": s.tracking_no, "order_no": order.order_no,
                                               "carrier": s.carrier, "status": s.status, "eta": s.eta,
                                               "events": s.events}])
        if not _known(conn, order.customer_id):
            return Applied(customer_known=False, status=after)
        events = newly_implied(before, after)
        _emit(conn, order.order_no, order.customer_id, events, amount=order.amount, at=event.at, source="webhook")
    return Applied(status=after, emitted=events)


def emit_for_import(engine: Engine, changes: Iterable[StatusChange], *, now: datetime) -> int:
    """Queue the events an order import implies: status changes, and new orders of the last :data:`RECENT`
    (an import of old orders is history, not news). Returns how many were queued (repeats excluded)."""
    news = [c for c in changes if c.before is not None or as_utc(c.created_at) >= as_utc(now) - RECENT]
    queued = 0
    with engine.begin() as conn:
        ids = sorted({c.customer_id for c in news})
        known = {cid for chunk in in_chunks(ids) for cid in conn.execute(
            select(Customer.__table__.c.id).where(Customer.__table__.c.id.in_(chunk))).scalars()}
        for change in news:
            if change.customer_id not in known:
                continue
            events = newly_implied(change.before, change.after)
            queued += _emit(conn, change.order_no, change.customer_id, events, amount=0, at=now, source="import")
    return queued
