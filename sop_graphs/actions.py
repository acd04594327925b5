"""Performs one outbound or bookkeeping step for a run: the single place step content becomes actions.

Used both by graph nodes (steps reached in conversation) and by the worker dispatching timed pushes
straight from the due table, so the two paths cannot drift apart.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from knowledge.batching import MISSING, ReadCache, reads
from knowledge.clock import as_utc
from knowledge.db import any_of, run_in
from knowledge.tables import Customer
from sop_graphs.customers import load_customer
from sop_graphs.deps import Deps, Origin
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags, finish_run
from sop_graphs.render import fill, render_step
from sop_graphs.spec import (
    AskStep,
    Catalog,
    CouponStep,
    EndStep,
    GroupInviteStep,
    HandoffStep,
    MessageStep,
    Outcome,
    SopSpec,
    TagStep,
    parse_duration,
)
from sop_graphs.tables import CouponLedger

_L = CouponLedger.__table__.c
_LEDGER_T = CouponLedger.__table__.name
_HELD_IN = select(_L.customer_id, _L.campaign_id, _L.code).where(any_of(_L.customer_id))


def delivery(spec: SopSpec, step: Any, origin: Origin) -> dict[str, Any]:
    """Mode, touchpoint, executor and marketing flag of an outbound step."""
    mode = step.mode or spec.defaults.mode
    touchpoint = step.touchpoint or spec.defaults.touchpoint
    executor = step.executor or spec.defaults.executor or ("ai" if mode in ("kf", "welcome") else "human")
    marketing = step.marketing if step.marketing is not None else origin != "customer"
    return {"mode": mode, "touchpoint": touchpoint, "executor": executor,
            "marketing": marketing and touchpoint == "private"}


def with_expiry(step: Any, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Stamp ``expires_at`` on time-sensitive content (e.g. a live reminder) so it is never sent late."""
    if getattr(step, "expires_after", None):
        payload["expires_at"] = as_utc(at + parse_duration(step.expires_after)).isoformat()
    if getattr(step, "priority", 0):
        payload["priority"] = step.priority
    return payload


def values_for(customer: dict[str, Any] | None, catalog: Catalog) -> dict[str, Any]:
    """Variables every text may use: {name}, {owner}, {shop} (the persona's brand), {advisor}."""
    customer = customer or {}
    persona = catalog.persona
    return {"name": customer.get("name") or "亲", "shop": persona.brand, "advisor": persona.advisor_title,
            "owner": owner_name(customer.get("owner") or "", persona.advisor_title)}


def owner_name(owner: str, title: str) -> str:
    """The owner's name without the title the shop's texts already put before it: WeCom names such as
    "顾问小禾" after "护肤顾问{owner}" would read "护肤顾问顾问小禾"; the longest end of the title the name
    starts with goes ("顾问小禾" → "小禾"), other names stay ("门店小美")."""
    for n in range(len(title), 1, -1):
        if owner.startswith(title[-n:]) and len(owner) > n:
            return owner[n:]
    return owner


def render_question(deps: Deps, conn: Connection, customer_id: str, step: AskStep) -> str:
    """An ask step's question with its variables filled for this customer."""
    return fill(step.question, values_for(load_customer(conn, customer_id), deps.library.catalog))


def perform(conn: Connection, deps: Deps, effects: Effects, *, spec: SopSpec, step: Any, run_id: str,
            customer: dict[str, Any] | None, customer_id: str, tags: set[str], occurrence: str, at: datetime,
            origin: Origin, prefix: str = "") -> None:
    """Turn ``step`` into outbox rows, coupon-ledger rows, tag writes or a run ending."""
    key = f"{run_id}/{step.id}/{occurrence}"
    touch = f"{run_id}@{as_utc(at).isoformat()}"
    catalog = deps.library.catalog
    if isinstance(step, MessageStep | GroupInviteStep | AskStep):
        values = values_for(customer, catalog)
        payload = (render_step(step, catalog, tags, values) if not isinstance(step, AskStep)
                   else {"text": fill(step.question, values), "question": step.slot})
        if prefix:
            payload["text"] = f"{prefix}{payload['text']}"
        effects.send(key=key, action=step.kind, customer_id=customer_id, at=at, payload=with_expiry(step, payload, at), run_id=run_id,
                     sop_id=spec.id, step_id=step.id, touch=touch, **delivery(spec, step, origin))
    elif isinstance(step, CouponStep):
        _issue_coupon(conn, deps, effects, spec, step, run_id, customer, customer_id, tags, key, touch, at, origin)
    elif isinstance(step, TagStep):
        change_tags(conn, deps, effects, customer_id, step.add, step.remove, source=key, at=at, run_id=run_id)
    elif isinstance(step, HandoffStep):
        open_handoff(conn, effects, customer_id, key=key, at=at, assignee=step.assignee_role, title=step.title,
                     instructions=step.instructions, due_in=step.due_in, pause_bot=step.pause_bot, run_id=run_id,
                     sop_id=spec.id, step_id=step.id)
    elif isinstance(step, EndStep):
        finish_run(conn, deps, effects, run_id, status="completed", reason="reached the end",
                   outcome=step.outcome, at=at)
    else:
        raise TypeError(f"step {step.id} of kind {step.kind} is not performed by actions")


def open_handoff(conn: Connection, effects: Effects, customer_id: str, *, key: str, at: datetime, assignee: str,
                 title: str, instructions: str, due_in: str = "2h", pause_bot: bool = True, run_id: str | None = None,
                 sop_id: str | None = None, step_id: str | None = None) -> None:
    """A task for a human employee; with ``pause_bot`` the bot stays quiet for this customer until released."""
    effects.send(key=key, action="task", customer_id=customer_id, at=at, run_id=run_id, sop_id=sop_id,
                 step_id=step_id, mode="task", executor="human",
                 payload={"assignee": assignee, "title": title, "text": instructions, "task_kind": "handoff",
                          "due_at": as_utc(at + parse_duration(due_in)).isoformat()})
    if pause_bot and customer_id:
        pause_bot_for(conn, effects, customer_id, at=at, key=f"pause/{key}", run_id=run_id,
                      summary=f"转人工（{assignee}）：机器人暂停，等待人工处理（{title}）")


def pause_bot_for(conn: Connection, effects: Effects, customer_id: str, *, at: datetime, key: str, summary: str,
                  run_id: str | None = None) -> None:
    """A human has the conversation: the bot stays quiet for this customer until :func:`release_handoff`."""
    conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == customer_id).values(bot_paused=True))
    effects.note(customer_id=customer_id, at=at, kind="handoff", run_id=run_id, key=key, summary=summary)


def release_handoff(conn: Connection, effects: Effects, customer_id: str, *, at: datetime, by: str) -> bool:
    """The human is done: the bot answers this customer again. False if the bot was not paused."""
    table = Customer.__table__
    changed = conn.execute(update(table).where(table.c.id == customer_id, table.c.bot_paused.is_(True))
                           .values(bot_paused=False)).rowcount
    if changed:
        effects.note(customer_id=customer_id, at=at, kind="released", key=f"release/{customer_id}/{at.isoformat()}",
                     summary=f"人工处理完毕（{by}）：机器人恢复接待")
    return bool(changed)


def end_without_step(conn: Connection, deps: Deps, effects: Effects, run_id: str, at: datetime) -> None:
    """Complete a run whose steps simply ran out."""
    finish_run(conn, deps, effects, run_id, status="completed", reason="reached the end", outcome=Outcome(), at=at)


def preload_coupons(conn: Connection, cache: ReadCache, ids: list[str]) -> None:
    """The coupons ``ids`` hold, by campaign, into ``cache`` (one query per 500 customers): a batch of coupon steps
    reads them from there (an issue in the batch drops its customer's entry: knowledge/batching.py)."""
    held: dict[str, dict[str, str]] = {cid: {} for cid in ids}
    for cid, campaign, code in run_in(conn, _HELD_IN, ids):
        held[cid][campaign] = code
    for cid, campaigns in held.items():
        cache.put(_LEDGER_T, cid, campaigns)


def _held_coupon(conn: Connection, customer_id: str, campaign: str) -> str | None:
    cache = reads(conn)
    if cache is not None and (held := cache.get(_LEDGER_T, customer_id)) is not MISSING:
        return held.get(campaign)
    return conn.execute(select(_L.code).where(_L.customer_id == customer_id, _L.campaign_id == campaign)).scalar()


def _hold_in_cache(conn: Connection, customer_id: str, campaign: str, code: str) -> None:
    """A batch's later steps see the coupon issued (until its ledger row is written, which drops the entry)."""
    cache = reads(conn)
    if cache is not None and (held := cache.get(_LEDGER_T, customer_id)) is not MISSING:
        cache.put(_LEDGER_T, customer_id, {**held, campaign: code})


def _issue_coupon(conn: Connection, deps: Deps, effects: Effects, spec: SopSpec, step: CouponStep, run_id: str,
                  customer: dict[str, Any] | None, customer_id: str, tags: set[str], key: str, touch: str,
                  at: datetime, origin: Origin) -> None:
    """The campaign's coupon for the customer, at most one per customer and campaign whatever runs ask: a new one
    waits in ``effects`` with its send (written together, the ledger row first: ``Effects.issue``); one the
    customer holds is sent again only to the run it was issued for (a replay)."""
    campaign = deps.library.catalog.campaigns[step.campaign]
    held = _held_coupon(conn, customer_id, step.campaign)
    if held is None and campaign.budget is not None:
        issued = conn.execute(select(func.count()).where(_L.campaign_id == step.campaign)).scalar() or 0
        if issued + effects.issuing(step.campaign) >= campaign.budget:
            effects.note(customer_id=customer_id, at=at, kind="coupon_skipped", run_id=run_id, key=f"nocoupon/{key}",
                         summary=f"券「{campaign.name}」已发完（预算 {campaign.budget} 张），未发放")
            return
    duplicate = f"券「{campaign.name}」此前已发放给该客户，不重复发放"
    if held is not None:
        owner = conn.execute(select(_L.run_id).where(_L.customer_id == customer_id,
                                                      _L.campaign_id == step.campaign)).scalar()
        if owner != run_id:
            effects.note(customer_id=customer_id, at=at, kind="coupon_skipped", run_id=run_id, key=f"dupcoupon/{key}",
                         summary=duplicate)
            return
        code = held
    else:
        code = "C" + hashlib.sha1(f"{step.campaign}/{customer_id}".encode()).hexdigest()[:10].upper()
        effects.issue(customer_id=customer_id, campaign_id=step.campaign, code=code, run_id=run_id, at=at,
                      send_key=key, skipped_key=f"dupcoupon/{key}", skipped_summary=duplicate)
        _hold_in_cache(conn, customer_id, step.campaign, code)
    payload = render_step(step, deps.library.catalog, tags, values_for(customer, deps.library.catalog))
    expires = at + timedelta(days=campaign.valid_days)
    payload |= {"code": code, "amount": campaign.amount, "threshold": campaign.threshold,
                "expires_at": as_utc(expires).isoformat()}
    effects.send(key=key, action="coupon", customer_id=customer_id, at=at, payload=with_expiry(step, payload, at),
                 run_id=run_id,
                 sop_id=spec.id, step_id=step.id, touch=touch, **delivery(spec, step, origin))
