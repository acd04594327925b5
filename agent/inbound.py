"""Processes stored inbound events in order: customers, stages, unsubscribe, answers, triggers, exits.

One event is one transaction. Graph work it causes (an answer to a waiting question, an enrolment)
is written as due rows in that same transaction, so a crash either keeps the event pending or has
recorded everything it implies — never half.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from agent.conversation import Conversation
from agent.intents import detect_intents
from agent.offline_brain import templates
from agent.tables import InboundEvent, Message
from knowledge.clock import as_utc
from knowledge.db import insert_ignore
from knowledge.tables import Customer
from sop_graphs.answers import parse_answer
from sop_graphs.customers import FROM_WECOM, load_customer, set_stage, tags_of
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects
from sop_graphs.enrolment import LIVE, CustomerEvent, change_tags, exit_runs, finish_run, fire
from sop_graphs.spec import AskStep, Outcome
from sop_graphs.tables import SopRun

_I = InboundEvent.__table__.c
_C = Customer.__table__.c
_R = SopRun.__table__.c
# built once: the tick loop runs these every simulated second, and building a statement costs more
# than running it on SQLite
_FIRST_EVENT = select(func.min(_I.received_at)).where(_I.status == "pending", _I.kind != "message")
_PENDING_MESSAGES = (select(_I.customer_id, _I.kind, _I.received_at).where(_I.status == "pending", _I.kind == "message")
                     .order_by(_I.received_at, _I.id))
_DUE_EVENTS = (select(InboundEvent.__table__).where(_I.status == "pending", _I.received_at <= bindparam("now"))
               .order_by(_I.received_at, _I.id))
_QUESTION = re.compile(r"[?？]|多少|怎么|什么|哪|吗|能不能|有没有|推荐|先问")


def submit(deps: Deps, *, key: str, customer_id: str, kind: str, payload: dict[str, Any],
           at: datetime | None = None) -> bool:
    """Store an inbound event durably; returns False for a duplicate delivery of the same key."""
    with deps.engine.begin() as conn:
        return insert_ignore(conn, InboundEvent.__table__, [{
            "key": key, "customer_id": customer_id, "kind": kind, "payload": payload,
            "received_at": as_utc(at or deps.clock.now()), "status": "pending"}]) == 1


class InboundProcessor:
    """Applies pending inbound events whose time has come, oldest first, one customer turn at a time.

    Messages of one customer that arrive within ``burst_window_seconds`` of each other are merged
    into one turn, which is processed once the burst has been quiet for that window.
    """

    def __init__(self, deps: Deps, conversation: Conversation | None = None) -> None:
        self.deps = deps
        self.conversation = conversation
        self.window = timedelta(seconds=deps.settings.burst_window_seconds)

    def next_at(self) -> datetime | None:
        """When the next event becomes processable: now for events, burst end + window for messages."""
        with self.deps.engine.connect() as conn:
            first = conn.execute(_FIRST_EVENT).scalar()
            messages = conn.execute(_PENDING_MESSAGES).mappings().all()
        times = [as_utc(first)] if first else []
        times += [as_utc(burst[-1]["received_at"]) + self.window for burst in self._group(messages)]
        return min(times) if times else None

    def process(self) -> int:
        now = self.deps.clock.now()
        with self.deps.engine.connect() as conn:
            rows = conn.execute(_DUE_EVENTS, {"now": as_utc(now)}).mappings().all()
        handled = 0
        for group in self._turns(rows, now):
            effects = Effects()
            head = dict(group[0])
            if len(group) > 1:
                head["payload"] = {**head["payload"], "text": "，".join(str(r["payload"].get("text", "")).strip()
                                                                       for r in group),
                                   "merged": [r["key"] for r in group]}
                head["received_at"] = group[-1]["received_at"]
            with self.deps.engine.begin() as conn:
                status = self._apply(conn, effects, head)
                effects.flush(conn)
                conn.execute(update(InboundEvent.__table__).where(_I.id.in_([r["id"] for r in group]))
                             .values(status=status))
            handled += len(group)
        return handled

    def _group(self, rows: Sequence[Any]) -> list[list[Any]]:
        """Rows (in time order) grouped into turns: one per event, one per burst of a customer's messages."""
        turns: list[list[Any]] = []
        open_burst: dict[str, list[Any]] = {}
        for row in rows:
            cid = row["customer_id"]
            burst = open_burst.get(cid)
            if row["kind"] == "message":
                if burst and as_utc(row["received_at"]) - as_utc(burst[-1]["received_at"]) <= self.window:
                    burst.append(row)
                    continue
                open_burst[cid] = [row]
                turns.append(open_burst[cid])
            else:
                open_burst.pop(cid, None)
                turns.append([row])
        return turns

    def _turns(self, rows: Sequence[Any], now: datetime) -> list[list[Any]]:
        """Turns ready now; a message burst waits until it has been quiet for the window."""
        blocked: set[str] = set()
        ready = []
        for turn in self._group(rows):
            cid = turn[0]["customer_id"]
            unsettled = turn[0]["kind"] == "message" and as_utc(turn[-1]["received_at"]) + self.window > now
            if cid in blocked or unsettled:
                blocked.add(cid)  # keep this customer's later events behind the open burst, in order
                continue
            ready.append(turn)
        return ready

    def _apply(self, conn: Connection, effects: Effects, row: Any) -> str:
        kind, payload, cid = row["kind"], row["payload"], row["customer_id"]
        at = as_utc(row["received_at"])
        if kind == "customer_added":
            self._added(conn, effects, cid, payload, at, row["key"])
            return "done"
        if load_customer(conn, cid) is None:
            effects.note(customer_id=cid, at=at, kind="rejected", key=f"rejected/{row['key']}",
                         summary=f"忽略未知客户的事件 {kind}")
            return "rejected"
        handler = {"message": self._message, "order": self._order, "behaviour": self._behaviour,
                   "customer_deleted": self._deleted, "tags": self._tags}.get(kind)
        if handler is None:
            effects.note(customer_id=cid, at=at, kind="rejected", key=f"rejected/{row['key']}",
                         summary=f"未知事件类型 {kind}")
            return "rejected"
        handler(conn, effects, cid, payload, at, row["key"])
        return "done"

    def _added(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime, key: str) -> None:
        existing = load_customer(conn, cid)
        if existing is None:
            conn.execute(Customer.__table__.insert().values(
                id=cid, name=p.get("name", ""), owner=p.get("owner", ""), channel_code=p.get("channel_code"),
                added_at=as_utc(at), stage="new", attributes=p.get("attributes") or {}))
            effects.note(customer_id=cid, at=at, kind="added", key=f"added/{key}",
                         summary=f"添加好友（渠道 {p.get('channel_code') or '无'}，跟进人 {p.get('owner') or '-'}）")
        else:
            conn.execute(update(Customer.__table__).where(_C.id == cid).values(
                added_at=as_utc(at), channel_code=p.get("channel_code") or existing["channel_code"]))
            set_stage(conn, effects, cid, "new", at=at, reason="重新添加")
        if p.get("tags"):
            change_tags(conn, self.deps, effects, cid, list(p["tags"]), [], source=f"import/{key}", at=at)
        fire(conn, self.deps, effects, cid, CustomerEvent("customer_added", key, at, dict(p)))

    def _message(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime,
                 key: str) -> None:
        text = str(p.get("text", "")).strip()
        deps = self.deps
        customer = load_customer(conn, cid) or {}
        conn.execute(update(Customer.__table__).where(_C.id == cid).values(last_inbound_at=as_utc(at)))
        effects.note(customer_id=cid, at=at, kind="inbound", key=f"in/{key}", summary=f"客户：{text}")
        insert_ignore(conn, Message.__table__, [{"key": f"in/{key}", "customer_id": cid, "direction": "in",
                                                 "text": text, "at": as_utc(at),
                                                 "meta": {"merged": p.get("merged", [])}}])
        if customer.get("stage") in ("new", "silent"):
            set_stage(conn, effects, cid, "active", at=at, reason="客户发来消息")
        intents = detect_intents(text)
        if "complaint" in intents:  # a complaint is handled as one, not also as product interest
            intents = [i for i in intents if i in ("complaint", "human")]
        if "unsubscribe" in intents:
            if customer.get("unsubscribed_at") is None:
                conn.execute(update(Customer.__table__).where(_C.id == cid).values(unsubscribed_at=as_utc(at)))
                effects.note(customer_id=cid, at=at, kind="unsubscribed", key=f"unsub/{key}",
                             summary="客户退订：营销推送立即停止")
                effects.send(key=f"reply/{key}", action="message", customer_id=cid, at=at,
                             payload={"text": "好的，已为您退订活动消息，之后不会再打扰您～有问题随时找我们。"})
            exit_runs(conn, deps, effects, cid, at=at, event="unsubscribed")
            return
        paused = bool(customer.get("bot_paused"))
        waiting = self._waiting(conn, cid)
        asked, valid = self._asked(waiting, text, at) if waiting is not None and waiting[3] == "ask" else (None, False)
        # a complaint or a call for a human that is not itself a valid answer leaves the question waiting
        escapes = bool({"complaint", "human"} & set(intents)) and not valid
        if waiting is not None and waiting[3] == "ask" and not escapes:
            run_id, sop_id, token, _ = waiting
            # not a valid answer but a question of its own: answer it, then ask again
            question = asked.question if asked is not None and not valid and _QUESTION.search(text) else None
            if question is not None and self.conversation is not None and not paused:
                self.conversation.turn(conn, effects, cid, text, key=key, at=at, pending_question=question)
                self.conversation.send(conn, effects, cid, templates()["digression_reask"].format(question=question),
                                       key=f"{key}/reask", at=at, meta={"reask": waiting[2]})
                return
            effects.schedule(key=f"{run_id}/answer/{key}", kind="resume", due_at=at, run_id=run_id, customer_id=cid,
                             sop_id=sop_id, payload={"token": token, "kind": "answer", "text": text, "event": key})
            if self.conversation is not None and not paused and _QUESTION.search(text):  # answers and asks
                self.conversation.turn(conn, effects, cid, text, key=key, at=at)
            return
        exit_runs(conn, deps, effects, cid, at=at, event="replied")
        sop_replies = False
        for intent in intents if not paused else []:  # a human has the conversation: no SOP butts in
            if intent == "complaint":
                exit_runs(conn, deps, effects, cid, at=at, event="complained")
            fired = fire(conn, deps, effects, cid, CustomerEvent("message_intent", f"{intent}@{key}", at,
                                                                 {"intent": intent}))
            sop_replies = sop_replies or (intent == "complaint" and bool(fired))
        if waiting is not None and waiting[3] == "chat" and set(intents) & {"bye", "thanks"}:
            run_id, sop_id, token, _ = waiting
            effects.schedule(key=f"{run_id}/chat-end/{key}", kind="resume", due_at=at, run_id=run_id, customer_id=cid,
                             sop_id=sop_id, payload={"token": token, "kind": "chat_end"})
        if paused:
            effects.note(customer_id=cid, at=at, kind="paused", key=f"paused/{key}",
                         summary="人工处理中：机器人不回复，消息留给人工")
        elif self.conversation is not None and not sop_replies:
            self.conversation.turn(conn, effects, cid, text, key=key, at=at)

    def _asked(self, waiting: tuple[str, str, str, str], text: str, at: datetime) -> tuple[AskStep | None, bool]:
        """The question a waiting run asked, and whether ``text`` is a valid answer to it."""
        spec = self.deps.library.sops.get(waiting[1])
        step_id = waiting[2].split(":")[1] if waiting[2] else ""
        step = spec.steps_by_id.get(step_id) if spec else None
        if not isinstance(step, AskStep):
            return None, False
        return step, parse_answer(step.answer, text, self.deps.shop.local_date(at)).ok

    def _waiting(self, conn: Connection, cid: str) -> tuple[str, str, str, str] | None:
        """The conversation a message continues: an open complaint's question first, else the latest asked."""
        rows = conn.execute(select(_R.id, _R.sop_id, _R.waiting, _R.waiting_kind, _R.waiting_since, _R.started_at)
                            .where(_R.customer_id == cid, _R.status.in_(LIVE),
                                   _R.waiting_kind.in_(("ask", "chat")))).all()
        if not rows:
            return None
        sops = self.deps.library.sops

        def rank(row: Any) -> tuple[bool, datetime, datetime]:
            spec = sops.get(row.sop_id)
            return (bool(spec and spec.suppresses_marketing), as_utc(row.waiting_since or row.started_at),
                    as_utc(row.started_at))

        best = max(rows, key=rank)
        return best.id, best.sop_id, best.waiting, best.waiting_kind

    def _order(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime, key: str) -> None:
        event = p.get("event", "paid")
        deps = self.deps
        effects.note(customer_id=cid, at=at, kind="order", key=f"order/{key}",
                     summary=f"订单 {p.get('order_id', '')} {event}" + (f"（¥{p['amount']}）" if p.get("amount") else ""))
        if event == "paid":
            count = (conn.execute(select(_C.orders_count).where(_C.id == cid)).scalar() or 0) + 1
            conn.execute(update(Customer.__table__).where(_C.id == cid).values(orders_count=count,
                                                                               last_order_at=as_utc(at)))
            set_stage(conn, effects, cid, "customer" if count == 1 else "repeat", at=at, reason="下单")
            exit_runs(conn, deps, effects, cid, at=at, event="purchased")
        if event == "delivered":
            exit_runs(conn, deps, effects, cid, at=at, event="delivered")
        fire(conn, deps, effects, cid, CustomerEvent("order_event", f"{event}@{key}", at, dict(p)))
        self._wake(conn, effects, cid, "purchased" if event == "paid" else event, at, key)

    def _wake(self, conn: Connection, effects: Effects, cid: str, event: str, at: datetime, key: str) -> None:
        for run_id, sop_id, token in conn.execute(select(_R.id, _R.sop_id, _R.waiting).where(
                _R.customer_id == cid, _R.waiting_kind == f"event:{event}", _R.status.in_(LIVE))).all():
            effects.schedule(key=f"{run_id}/event/{key}", kind="resume", due_at=at, run_id=run_id, customer_id=cid,
                             sop_id=sop_id, payload={"token": token, "kind": "event"})

    def _behaviour(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime,
                   key: str) -> None:
        effects.note(customer_id=cid, at=at, kind="behaviour", key=f"beh/{key}",
                     summary=f"行为：{p.get('event')} {p.get('title', '')}".strip())
        fire(conn, self.deps, effects, cid, CustomerEvent("behaviour", key, at, dict(p)))

    def _tags(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime, key: str) -> None:
        """Tags as WeCom now has them (an employee edited them in the client): make ours the same.

        Changes carry a ``wecom/`` source, so they fire tag triggers but are not written back.
        """
        wanted = set(p.get("tags", []))
        current = tags_of(conn, cid)
        change_tags(conn, self.deps, effects, cid, sorted(wanted - current), sorted(current - wanted),
                    source=f"{FROM_WECOM}{key}", at=at)

    def _deleted(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime,
                 key: str) -> None:
        set_stage(conn, effects, cid, "churned", at=at, reason="客户删除了好友")
        for (run_id,) in conn.execute(select(_R.id).where(_R.customer_id == cid, _R.status.in_(LIVE))).all():
            finish_run(conn, self.deps, effects, run_id, status="exited", reason="churned", outcome=Outcome(), at=at)
