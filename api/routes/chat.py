"""Web chat: ``POST /chat`` and its streaming variant ``POST /chat/stream`` (server-sent events).

The customer is whoever the signed session names; a new session creates a new web customer. The body
never chooses the customer, so a chat can only ever read its own orders. Messages go through the same
pipeline as WeCom (inbound event → turn → outbox → channel); the endpoint waits for the pump.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, union_all

from agent.inbound import submit
from agent.tables import InboundEvent
from api.deps import ServiceDep
from api.service import Service
from knowledge.clock import as_utc
from knowledge.tables import Customer
from sop_graphs.customers import WEB_PREFIX
from sop_graphs.tables import DueTouchpoint, Outbox

router = APIRouter(tags=["chat"])
# what a customer may see: never an employee's task (handoff notes) or a tag write
CUSTOMER_FACING = ("message", "ask", "group_invite", "coupon")
_SENTENCE = re.compile(r"(?<=[。！？!?～\n])")


class ChatIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000, description="The customer's message.")
    session: str | None = Field(default=None, max_length=128,
                                description="Session from a previous reply; omit to start one.")
    name: str | None = Field(default=None, max_length=64, description="Display name for a new customer.")
    message_id: str | None = Field(default=None, max_length=64, pattern=r"^[0-9A-Za-z_-]+$",
                                   description="Client message id; a retry with the same id is processed once.")


class ChatReply(BaseModel):
    text: str
    action: str
    sop_id: str | None = None
    step_id: str | None = None
    status: str = Field(description="sent, or pending when the contact policy deferred it")


class ChatOut(BaseModel):
    session: str
    customer_id: str
    replies: list[ChatReply]


def _sign(request: Request, customer_id: str) -> str:
    mac = hmac.new(request.app.state.chat_secret.encode(), customer_id.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{customer_id}.{mac}"


def _customer_of(request: Request, session: str) -> str:
    customer_id, _, _ = session.rpartition(".")
    if not customer_id or not hmac.compare_digest(_sign(request, customer_id), session):
        raise HTTPException(401, "invalid chat session")
    return customer_id


def _accept(service: Service, customer_id: str, body: ChatIn, new: bool) -> tuple[int, str]:
    deps = service.runtime.deps
    now = deps.clock.now()
    with deps.engine.connect() as conn:
        last = conn.execute(select(func.max(Outbox.__table__.c.id))).scalar() or 0
        exists = conn.execute(select(Customer.__table__.c.id).where(Customer.__table__.c.id == customer_id)).first()
    if new or not exists:
        submit(deps, key=f"web-add/{customer_id}", customer_id=customer_id, kind="customer_added", at=now,
               payload={"name": body.name or "访客", "channel_code": "web"})
    key = f"web/{customer_id}/{body.message_id or secrets.token_hex(8)}"
    if not submit(deps, key=key, customer_id=customer_id, kind="message", at=now,
                  payload={"text": body.text, "channel": "web", "after_outbox": last}):
        # a retry of a message already received: its replies are those that followed the first delivery
        with deps.engine.connect() as conn:
            first = conn.execute(select(InboundEvent.__table__.c.payload)
                                 .where(InboundEvent.__table__.c.key == key)).scalar()
        last = int((first or {}).get("after_outbox", last))
    return last, key


def _settled(service: Service, customer_id: str) -> bool:
    """Nothing of this turn is left to do now: the customer's messages are handled, and no due row or outbox
    row of theirs is waiting for a pass (rows the contact policy deferred wait for a later time, not a pass)."""
    now = as_utc(service.runtime.deps.clock.now())
    i, d, o = InboundEvent.__table__.c, DueTouchpoint.__table__.c, Outbox.__table__.c
    waiting = union_all(
        select(i.id).where(i.customer_id == customer_id, i.status == "pending"),
        select(d.id).where(d.customer_id == customer_id, d.status == "pending", d.due_at <= now),
        select(o.id).where(o.customer_id == customer_id, o.status == "pending", o.not_before <= now))
    with service.runtime.deps.engine.connect() as conn:
        return conn.execute(waiting.limit(1)).first() is None


def _replies(service: Service, customer_id: str, after: int) -> list[ChatReply]:
    """Customer-facing outbox rows after ``after``, up to where the customer's next message began."""
    o, i = Outbox.__table__.c, InboundEvent.__table__.c
    with service.runtime.deps.engine.connect() as conn:
        later = [int(p.get("after_outbox", 0)) for p in conn.execute(
            select(i.payload).where(i.customer_id == customer_id, i.kind == "message")).scalars()
            if int((p or {}).get("after_outbox", 0)) > after]
        query = select(o.payload, o.action, o.sop_id, o.step_id, o.status).where(
            o.customer_id == customer_id, o.id > after, o.action.in_(CUSTOMER_FACING))
        if later:
            query = query.where(o.id <= min(later))
        rows = conn.execute(query.order_by(o.id)).all()
    return [ChatReply(text=str(p.get("text") or p.get("title") or ""), action=a, sop_id=s, step_id=st, status=stat)
            for p, a, s, st, stat in rows]


def _limit(request: Request, service: Service, customer_id: str | None) -> None:
    """429 when this client address, or this session's customer, sends faster than the settings allow (per
    process: the limits are in memory)."""
    by_address, by_session = request.app.state.chat_limits
    now = service.clock.now()
    checks = [(by_address, f"ip:{request.client.host if request.client else '-'}")]
    checks += [(by_session, f"s:{customer_id}")] if customer_id else []
    for limiter, key in checks:
        if not limiter.hit(key, now):
            raise HTTPException(429, "too many messages; please slow down",
                                headers={"Retry-After": str(limiter.retry_after(key, now))})


async def _run_turn(request: Request, service: Service, body: ChatIn,
                    limited: bool = False) -> tuple[str, str, list[ChatReply]]:
    new = body.session is None
    customer_id = f"{WEB_PREFIX}{secrets.token_hex(8)}" if new else _customer_of(request, body.session or "")
    if not limited:  # a stream is checked before it starts
        _limit(request, service, customer_id)
    last, _ = await run_in_threadpool(_accept, service, customer_id, body, new)
    service.wake()
    deadline = time.monotonic() + service.settings.chat_wait_seconds + service.settings.burst_window_seconds
    while time.monotonic() < deadline:
        if await run_in_threadpool(_settled, service, customer_id):
            break
        await asyncio.sleep(0.02)
        service.wake()
    return _sign(request, customer_id), customer_id, await run_in_threadpool(_replies, service, customer_id, last)


@router.post("/chat", response_model=ChatOut,
             responses={401: {"description": "invalid chat session"}, 429: {"description": "too many messages"}})
async def chat(request: Request, body: ChatIn, service: ServiceDep) -> ChatOut:
    """Send one customer message; returns every reply the pipeline produced for it."""
    session, customer_id, replies = await _run_turn(request, service, body)
    return ChatOut(session=session, customer_id=customer_id, replies=replies)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/chat/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}, 401: {"description": "invalid chat session"},
                        429: {"description": "too many messages"}})
async def chat_stream(request: Request, body: ChatIn, service: ServiceDep) -> StreamingResponse:
    """Like ``/chat``, as server-sent events: ``session``, then ``delta`` pieces per reply, then ``done``."""
    # a bad session or a sender over its rate is refused before the stream starts
    _limit(request, service, _customer_of(request, body.session) if body.session is not None else None)

    async def events() -> AsyncIterator[str]:
        session, customer_id, replies = await _run_turn(request, service, body, limited=True)
        yield _event("session", {"session": session, "customer_id": customer_id})
        for index, reply in enumerate(replies):
            for piece in filter(None, _SENTENCE.split(reply.text)):
                yield _event("delta", {"reply": index, "text": piece})
            yield _event("reply", reply.model_dump())
        yield _event("done", {"replies": len(replies)})

    return StreamingResponse(events(), media_type="text/event-stream")
