"""The operators' workbench: conversations that need a person now, a human reply into a taken-over conversation,
and tag edits by an operator (audited, with provenance)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from agent.inbound import ESCAPES
from agent.tables import Message
from api import audit
from api.deps import OperatorDep, ServiceDep
from knowledge.clock import as_utc
from knowledge.db import insert_ignore
from knowledge.tables import Customer, CustomerTag, TimelineEntry
from sop_graphs.channel import shown_text
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags
from sop_graphs.tables import EmployeeTask, Outbox

router = APIRouter(prefix="/api", tags=["workbench"], responses={401: {"description": "operator token required"},
                                                             403: {"description": "the caller's role may not"}})
_C, _M, _K = Customer.__table__.c, Message.__table__.c, EmployeeTask.__table__.c
_T = TimelineEntry.__table__.c
SOP_SENDS = ("message", "ask", "coupon", "group_invite")  # what a customer sees of an SOP (tags and tasks they don't)


class Attention(BaseModel):
    customer_id: str
    name: str
    reasons: list[str]
    bot_paused: bool
    last_message: str | None
    last_at: datetime | None
    open_tasks: int


class MessageOut(BaseModel):
    at: datetime
    direction: str = Field(description="in (the customer) or out (the bot or a person)")
    text: str
    intent: str | None = None
    grounded: bool | None = None
    human: str | None = Field(default=None, description="who replied, when a person did")
    sop_id: str | None = Field(default=None, description="an SOP's step sent this")
    step_id: str | None = None
    action: str | None = Field(default=None, description="SOP sends: message, ask, coupon, group_invite")
    mode: str | None = Field(default=None, description="SOP sends: how it went out (kf, welcome, member_task…)")


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    by: str | None = Field(default=None, max_length=64, description="who writes (default: the caller)")


class TagEdit(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


@router.get("/conversations/attention", response_model=list[Attention])
def needing_attention(service: ServiceDep, _: OperatorDep, hours: int = Query(default=24, ge=1, le=720),
                      limit: int = Query(default=100, ge=1, le=500)) -> Any:
    """Customers a person should look at now: an open handoff, the bot paused, or in the last ``hours`` a
    negative or complaining message, or a question the bot could not answer. Most reasons first."""
    now = as_utc(service.clock.now())
    since = now - timedelta(hours=hours)
    reasons: dict[str, list[str]] = {}

    def add(cid: str, reason: str) -> None:
        bucket = reasons.setdefault(cid, [])
        if reason not in bucket:
            bucket.append(reason)

    with service.runtime.deps.engine.connect() as conn:
        tasks: dict[str, int] = {}
        for cid, kind in conn.execute(select(_K.customer_id, _K.kind).where(_K.status == "open",
                                                                            _K.customer_id.is_not(None))).all():
            tasks[cid] = tasks.get(cid, 0) + 1
            if kind == "handoff":
                add(cid, "待人工处理")
        for (cid,) in conn.execute(select(_C.id).where(_C.bot_paused.is_(True))).all():
            add(cid, "机器人已暂停")
        for cid, meta in conn.execute(select(_M.customer_id, _M.meta).where(
                _M.direction == "out", _M.at >= since, _M.key.like("out/%"))).all():
            meta = meta or {}
            if meta.get("intent") in ESCAPES:  # an incident, a complaint, abuse or asking for a person
                add(cid, "情绪负面/投诉")
            if meta.get("grounded") is False:
                add(cid, "未能回答")
        ids = sorted(reasons, key=lambda c: (-len(reasons[c]), c))[:limit]
        if not ids:
            return []
        rows = {r["id"]: r for r in conn.execute(select(_C.id, _C.name, _C.bot_paused).where(_C.id.in_(ids)))
                .mappings()}
        last: dict[str, tuple[str, datetime]] = {}
        for cid, text, at in conn.execute(select(_M.customer_id, _M.text, _M.at).where(
                _M.customer_id.in_(ids), _M.direction == "in").order_by(_M.at)).all():
            last[cid] = (text, as_utc(at))
    return [Attention(customer_id=cid, name=rows[cid]["name"] if cid in rows else cid, reasons=reasons[cid],
                      bot_paused=bool(rows[cid]["bot_paused"]) if cid in rows else False,
                      last_message=last.get(cid, (None, None))[0], last_at=last.get(cid, (None, None))[1],
                      open_tasks=tasks.get(cid, 0)) for cid in ids if cid in rows]


@router.get("/conversations/{customer_id}/messages", response_model=list[MessageOut],
            responses={404: {"description": "unknown customer"}})
def transcript(customer_id: str, service: ServiceDep, _: OperatorDep,
               limit: int = Query(default=100, ge=1, le=1000)) -> list[MessageOut]:
    """The last ``limit`` messages both ways, oldest first: the customer's, the bot's and people's replies, and
    what SOP steps sent (questions, messages, coupons, group invitations)."""
    o = Outbox.__table__.c
    with service.runtime.deps.engine.connect() as conn:
        if conn.execute(select(_C.id).where(_C.id == customer_id)).first() is None:
            raise HTTPException(404, f"unknown customer {customer_id!r}")
        rows = conn.execute(select(_M.at, _M.id, _M.direction, _M.text, _M.meta).where(_M.customer_id == customer_id)
                            .order_by(_M.at.desc(), _M.id.desc()).limit(limit)).all()
        sends = conn.execute(select(o.sent_at, o.id, o.sop_id, o.step_id, o.action, o.mode, o.payload).where(
            o.customer_id == customer_id, o.status == "sent", o.sop_id.is_not(None), o.action.in_(SOP_SENDS))
            .order_by(o.sent_at.desc(), o.id.desc()).limit(limit)).all()
    out: list[tuple[datetime, int, MessageOut]] = []
    for at, row_id, direction, text, meta in rows:
        meta = meta or {}
        grounded = meta.get("grounded")
        out.append((as_utc(at), row_id, MessageOut(
            at=at, direction=direction, text=text, intent=meta.get("intent"),
            grounded=grounded if isinstance(grounded, bool) else None, human=meta.get("human"))))
    for at, row_id, sop_id, step_id, action, mode, payload in sends:
        out.append((as_utc(at), row_id, MessageOut(at=at, direction="out", text=shown_text(payload), sop_id=sop_id,
                                                   step_id=step_id, action=action, mode=mode)))
    out.sort(key=lambda m: (m[0], m[1]))
    return [m for _, _, m in out[-limit:]]


@router.get("/tags", response_model=list[str])
def taxonomy(service: ServiceDep, _: OperatorDep) -> list[str]:
    """The shop's tag taxonomy: the tags an operator may set."""
    return sorted(service.runtime.deps.library.catalog.tags)


@router.post("/conversations/{customer_id}/reply", status_code=202,
             responses={404: {"description": "unknown customer"}, 409: {"description": "the bot is not paused"}})
def human_reply(customer_id: str, body: ReplyIn, service: ServiceDep, actor: OperatorDep) -> dict[str, str]:
    """A person answers in a conversation they took over: sent through the customer's channel, in the transcript."""
    now = as_utc(service.clock.now())
    by = body.by or actor
    key = f"human/{customer_id}/{now.isoformat()}/{secrets.token_hex(4)}"
    with service.runtime.deps.engine.begin() as conn:
        paused = conn.execute(select(_C.bot_paused).where(_C.id == customer_id)).first()
        if paused is None:
            raise HTTPException(404, f"unknown customer {customer_id!r}")
        if not paused[0]:
            raise HTTPException(409, "take the conversation over first (POST …/takeover): the bot is answering")
        effects = Effects()
        effects.send(key=key, action="message", customer_id=customer_id, at=now, payload={"text": body.text},
                     mode="kf", executor="human")
        effects.note(customer_id=customer_id, at=now, kind="human_reply", key=key, summary=f"{by}：{body.text}")
        effects.flush(conn)
        insert_ignore(conn, Message.__table__, [{"key": f"out/{key}", "customer_id": customer_id, "direction": "out",
                                                 "text": body.text, "at": now, "meta": {"human": by}}])
        audit.record(conn, at=now, actor=actor, action="conversation.reply", target=customer_id, detail={"by": by})
    service.wake()
    return {"key": key}


@router.post("/customers/{customer_id}/tags", responses={404: {"description": "unknown customer"},
                                                         422: {"description": "a tag outside the taxonomy"}})
def edit_tags(customer_id: str, body: TagEdit, service: ServiceDep, actor: OperatorDep) -> dict[str, list[str]]:
    """An operator adds or removes tags (of the taxonomy): synced to WeCom, tag-triggered SOPs fire, audited; the
    tag's provenance names the operator."""
    deps = service.runtime.deps
    taxonomy = deps.library.catalog.tags
    unknown = sorted(set(body.add + body.remove) - taxonomy)
    if unknown:
        raise HTTPException(422, f"not in the tag taxonomy: {', '.join(unknown)}")
    now = as_utc(service.clock.now())
    with deps.engine.begin() as conn:
        if conn.execute(select(_C.id).where(_C.id == customer_id)).first() is None:
            raise HTTPException(404, f"unknown customer {customer_id!r}")
        effects = Effects()
        change_tags(conn, deps, effects, customer_id, list(dict.fromkeys(body.add)), list(dict.fromkeys(body.remove)),
                    source=f"operator:{actor}", at=now)
        effects.flush(conn)
        audit.record(conn, at=now, actor=actor, action="customer.tags", target=customer_id,
                     detail={"add": body.add, "remove": body.remove})
        tags = sorted(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == customer_id)).scalars())
    service.wake()
    return {"tags": tags}
