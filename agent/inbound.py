"""Processes stored inbound events in order: customers, stages, unsubscribe, answers, triggers, exits.

One event is one transaction. Graph work it causes (an answer to a waiting question, an enrolment)
is written as due rows in that same transaction, so a crash either keeps the event pending or has
recorded everything it implies — never half.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.engine import Connection

from agent.breaker import CircuitState
from agent.conversation import Conversation
from agent.prefetch import Drafts, MemoBrain, NotPrefetched
from agent.router import Router, names_a_product
from agent.tables import InboundEvent, Message
from agent.understanding import INCIDENT_INTENTS, QUESTION_INTENTS, Understanding
from knowledge.amounts import parse_amount
from knowledge.batching import cached_reads, deferred_writes
from knowledge.clock import as_utc
from knowledge.db import any_of, insert_ignore, insert_many, run_in
from knowledge.tables import Customer, TimelineEntry
from knowledge.text import normalise
from sop_graphs.actions import render_question
from sop_graphs.answers import Parsed, parse_answer
from sop_graphs.customers import (
    FROM_WECOM,
    load_customer,
    load_customers,
    preload,
    remember_customer,
    set_stage,
    tags_of,
)
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects
from sop_graphs.enrolment import LIVE, CustomerEvent, change_tags, exit_runs, finish_run, fire
from sop_graphs.facts import QUESTIONS_DECLINED_DAYS, current_fact, decline_questions, record_answer
from sop_graphs.policy import is_unsubscribe
from sop_graphs.render import reply_text
from sop_graphs.spec import AskStep, Outcome
from sop_graphs.tables import SopRun

_I = InboundEvent.__table__.c
_SETTLE_IN = update(InboundEvent.__table__).where(any_of(_I.id)).values(status=bindparam("status"))
_C = Customer.__table__.c
_R = SopRun.__table__.c
# built once: the tick loop runs these every simulated second, and building a statement costs more
# than running it on SQLite
_M = InboundEvent.__table__.alias("m")
# the first event not waiting behind a message of its customer (that one is processed when the burst is)
_FIRST_EVENT = (select(_I.received_at).where(_I.status == "pending", _I.kind != "message", ~exists().where(
    _M.c.customer_id == _I.customer_id, _M.c.status == "pending", _M.c.kind == "message",
    _M.c.received_at <= _I.received_at)).order_by(_I.received_at).limit(1))
_PENDING_MESSAGES = (select(_I.customer_id, _I.kind, _I.received_at).where(_I.status == "pending", _I.kind == "message")
                     .order_by(_I.received_at, _I.id))
_DUE_EVENTS = (select(InboundEvent.__table__).where(_I.status == "pending", _I.received_at <= bindparam("now"))
               .order_by(_I.received_at, _I.id))
log = logging.getLogger("sopagent.inbound")
EVENT_CHUNK = 200  # non-message turns per transaction
ESCAPES = {"complaint", "adverse_reaction", "damaged", "missing_item", "quality_issue", "abuse", "human"}
_OURS = re.compile(r"你家|你们家|你们的|你们店|你这|在你们|收到|到货|快递|这次买|刚买|买的|订单")
HOLDING = {"hold_on", "greeting", "thanks", "smalltalk", "repeat_question"}
_EMOJI_ONLY = re.compile(r"^[\W\s\u2600-\u27bf\U0001f000-\U0001faff]*$")
_AMOUNT_CONTEXT = re.compile(r"预算|价位|以内|以下|之内|左右|上下|不超过|不到|出头|块|元|budget")
_ASKS = re.compile(r"[?？吗呢]|多少|怎么|什么|啥|哪|几|能不能|有没有|帮我|麻烦|查|推荐|还有|另外|顺便")
_BARE_CHOICE = re.compile(r"\W*(?:选|第)?[0-9a-h一二三四五六七八九]\W*")
_ORDINAL_ONLY = re.compile(r"^\W*(?:我)?选\s*[0-9a-h]")
_UNSURE = re.compile(r"不(太|是很)?(清楚|确定)|不知道|说不好")  # after the question has gone: not an answer, not a query
LATE_WINDOW = timedelta(hours=48)  # a question that timed out this recently still takes a bare answer
ESCALATE_CONFIDENCE = 0.8  # how sure a reading must be to outrank a late questionnaire answer
MAX_REDRAFTS = 2  # a turn whose inputs changed this often while drafted answers offline


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
        self.drafts = Drafts(deps.settings.turn_concurrency) \
            if conversation is not None and isinstance(conversation.brain, MemoBrain) else None
        self.router = conversation.router if conversation is not None else Router(deps.library.catalog)
        self.window = timedelta(seconds=deps.settings.burst_window_seconds)

    def next_at(self) -> datetime | None:
        """When the next event becomes processable: now for events, burst end + window for messages (and for the
        events of their customer that came after them)."""
        with self.deps.engine.connect() as conn:
            first = conn.execute(_FIRST_EVENT).scalar()
            messages = conn.execute(_PENDING_MESSAGES).mappings().all()
        times = [as_utc(first)] if first else []
        times += [as_utc(burst[-1]["received_at"]) + self.window for burst in self._group(messages)]
        return min(times) if times else None

    def process(self, deadline: float | None = None, shard: int | None = None,
                guard: Callable[[], None] | None = None) -> int:
        """Write the turns that are ready, each in its own short transaction, customers in the order they wrote;
        returns how many events were handled. With an LLM brain a message turn is first drafted off the write
        path (agent/prefetch.py): a pass never waits for the model, it writes the turns whose drafts are done
        and leaves the others (and their customers' later events) for a later pass. Stops at ``deadline``
        (``time.monotonic()``), so a pass holding the pump is short whatever the backlog."""
        now = self.deps.clock.now()
        with self.deps.engine.connect() as conn:
            query = _DUE_EVENTS if shard is None else _DUE_EVENTS.where(_I.shard == shard)
            rows = conn.execute(query, {"now": as_utc(now)}).mappings().all()
        check = guard or (lambda: None)  # before each write: the shard is still this worker's
        by_customer: dict[str, list[tuple[list[Any], dict[str, Any]]]] = {}
        for group in self._turns(rows, now):
            head = dict(group[0])
            if len(group) > 1:
                head["payload"] = {**head["payload"], "text": "，".join(str(r["payload"].get("text", "")).strip()
                                                                       for r in group),
                                   "merged": [r["key"] for r in group]}
                head["received_at"] = group[-1]["received_at"]
            by_customer.setdefault(head["customer_id"], []).append((group, head))
        handled = 0
        events: list[tuple[list[Any], dict[str, Any]]] = []  # non-message turns, written EVENT_CHUNK at a time
        for cid, turns in by_customer.items():
            for group, head in turns:
                if head["kind"] != "message":
                    events.append((group, head))
                    if len(events) >= EVENT_CHUNK:
                        handled += self._write_events(events, check)
                    continue
                handled += self._write_events(events, check)  # what came before this message is written first
                ready, offline = self._drafted(cid, group, head)
                if not ready:
                    break  # this customer's later events wait behind the draft: per-customer order holds
                try:
                    check()
                    self._write(group, head, offline=offline)
                except NotPrefetched:  # its inputs changed while the model answered: draft it again
                    self._redraft(cid, group, head)
                    break
                if self.drafts is not None:
                    self.drafts.forget(cid)
                handled += len(group)
            if deadline is not None and time.monotonic() >= deadline:
                break
        return handled + self._write_events(events, check)

    def _write_events(self, events: list[tuple[list[Any], dict[str, Any]]], check: Callable[[], None]) -> int:
        """Non-message turns (contacts added or imported, orders, tags…) in one transaction: none of them calls a
        model, and an import of a million contacts must not cost a million commits. Empties ``events``."""
        if not events:
            return 0
        check()
        settled: dict[str, list[int]] = {}
        with self.deps.engine.begin() as conn:
            # the chunk's customers read in three queries and its timeline, outbox and due rows written in one
            # statement per table (knowledge/batching.py keeps both exact across the handlers' own writes)
            with cached_reads(conn, lambda cache: preload(conn, cache, [head["customer_id"] for _, head in events])), \
                    deferred_writes(conn, Effects()):
                fresh = self._insert_new_contacts(conn, [head for _, head in events])
                for group, head in events:
                    effects = Effects()
                    status = self._apply(conn, effects, head, fresh=fresh)
                    effects.flush(conn)
                    settled.setdefault(status, []).extend(r["id"] for r in group)
            for status, ids in settled.items():
                run_in(conn, _SETTLE_IN, ids, status=status)
        if self.drafts is not None:
            for _, head in events:
                self.drafts.forget(head["customer_id"])
        handled = sum(len(group) for group, _ in events)
        events.clear()
        return handled

    @staticmethod
    def _customer_row(cid: str, p: dict[str, Any], at: datetime) -> dict[str, Any]:
        return {"id": cid, "name": p.get("name", ""), "owner": p.get("owner", ""),
                "channel_code": p.get("channel_code"), "added_at": as_utc(at), "stage": "new",
                "attributes": p.get("attributes") or {}}

    def _insert_new_contacts(self, conn: Connection, heads: list[dict[str, Any]]) -> set[str]:
        """The customers a chunk's events meet first as a new contact (their first event here is customer_added,
        and they are unknown), inserted in one statement and read back in one; their ``_added`` then only notes
        it. Returns their ids. Anything else about them in the chunk comes after, as one at a time would have it."""
        rows: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        for head in heads:
            cid = head["customer_id"]
            if cid not in seen and head["kind"] == "customer_added" and load_customer(conn, cid) is None:
                rows[cid] = self._customer_row(cid, head["payload"], as_utc(head["received_at"]))
            seen.add(cid)
        if rows:
            insert_many(conn, Customer.__table__, list(rows.values()))
            for row in load_customers(conn, list(rows)).values():
                remember_customer(conn, row)  # what fire() and the SOPs' first steps read next
        return set(rows)

    def drafting(self) -> int:
        """Drafts still waiting for the model."""
        return self.drafts.pending() if self.drafts is not None else 0

    def _drafted(self, cid: str, group: list[Any], head: dict[str, Any]) -> tuple[bool, bool]:
        """(may this turn be written now, must it answer offline). Only LLM message turns are drafted; one whose
        draft is still out is written anyway, offline, once the circuit has opened (the endpoint is down: its
        customers are answered now rather than when their calls time out)."""
        drafts, conv = self.drafts, self.conversation
        if drafts is None or conv is None or head["kind"] != "message":
            return True, False
        keys = tuple(r["key"] for r in group)
        state = drafts.state(cid, keys)
        if state == "none":
            drafts.submit(cid, keys, lambda: self._draft(head))
            return False, False
        if state == "pending":
            return (True, True) if conv.breaker.status().state == CircuitState.OPEN else (False, False)
        return True, drafts.redrafts(cid) >= MAX_REDRAFTS

    def _redraft(self, cid: str, group: list[Any], head: dict[str, Any]) -> None:
        assert self.drafts is not None
        self.drafts.submit(cid, tuple(r["key"] for r in group), lambda: self._draft(head, always=True))

    def _write(self, group: list[Any], head: dict[str, Any], offline: bool = False) -> None:
        """One turn in one short write transaction; an LLM turn's model calls were drafted before it
        (inside, the memo is strict: a call not drafted raises :class:`NotPrefetched`, rolling back)."""
        effects = Effects()
        brain = self.conversation.brain if self.conversation is not None else None
        strict = brain.strict() if isinstance(brain, MemoBrain) else contextlib.nullcontext()
        with strict, self.deps.engine.begin() as conn:
            status = self._apply(conn, effects, head, offline=offline)
            effects.flush(conn)
            conn.execute(update(InboundEvent.__table__).where(_I.id.in_([r["id"] for r in group]))
                         .values(status=status))

    def _draft(self, head: dict[str, Any], always: bool = False) -> None:
        """Make a message turn's model calls (a drafting thread; reads only). Messages that need no model — a
        paused bot, an opt-out, a plain answer to the waiting question — are not drafted unless ``always``."""
        conv = self.conversation
        assert conv is not None
        cid, text = head["customer_id"], str(head["payload"].get("text", "")).strip()
        at = as_utc(head["received_at"])
        try:
            with self.deps.engine.connect() as conn:
                customer = load_customer(conn, cid)
                waiting = self._waiting(conn, cid)
            asked = self._asked_step(waiting) if waiting is not None and waiting[3] == "ask" else None
            if not always and (customer is None or customer.get("bot_paused") or is_unsubscribe(text)):
                return
            if not always and asked is not None and self._plain_answer(text) and parse_answer(
                    asked.answer, text, self.deps.shop.local_date(at),
                    self.deps.library.catalog.profile.facts.get(asked.slot)).ok:
                return  # a plain answer needs no model
            conv.draft(self.deps.engine, cid, text, pending_question=asked.question if asked else None, at=at)
        except Exception:  # a draft is an optimisation: the turn itself still runs and handles what failed
            log.exception("drafting %s failed", head.get("key"))

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

    def _apply(self, conn: Connection, effects: Effects, row: Any, offline: bool = False,
               fresh: set[str] | None = None) -> str:
        """Handle one turn. ``fresh``: customers inserted for this chunk (:meth:`_insert_new_contacts`); the
        first customer_added of each takes its id out of the set."""
        kind, payload, cid = row["kind"], row["payload"], row["customer_id"]
        at = as_utc(row["received_at"])
        if kind == "customer_added":
            inserted = fresh is not None and cid in fresh
            if inserted:
                fresh.discard(cid)
            self._added(conn, effects, cid, payload, at, row["key"], inserted=inserted)
            return "done"
        if load_customer(conn, cid) is None:
            effects.note(customer_id=cid, at=at, kind="rejected", key=f"rejected/{row['key']}",
                         summary=f"忽略未知客户的事件 {kind}")
            return "rejected"
        handler = {"message": functools.partial(self._message, offline=offline), "order": self._order,
                   "behaviour": self._behaviour, "customer_deleted": self._deleted, "tags": self._tags,
                   "task_completed": self._task_done, "contact_imported": self._imported}.get(kind)
        if handler is None:
            effects.note(customer_id=cid, at=at, kind="rejected", key=f"rejected/{row['key']}",
                         summary=f"未知事件类型 {kind}")
            return "rejected"
        handler(conn, effects, cid, payload, at, row["key"])
        return "done"

    def _added(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime, key: str,
               inserted: bool = False) -> None:
        existing = None if inserted else load_customer(conn, cid)
        if existing is None:
            if not inserted:
                conn.execute(Customer.__table__.insert().values(**self._customer_row(cid, p, at)))
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
                 key: str, offline: bool = False) -> None:
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
        waiting = self._waiting(conn, cid)
        asked = self._asked_step(waiting) if waiting is not None and waiting[3] == "ask" else None
        conv = self.conversation
        parsed = parse_answer(asked.answer, text, deps.shop.local_date(at),
                              deps.library.catalog.profile.facts.get(asked.slot)) if asked is not None else None
        if parsed is not None and parsed.ok and self._plain_answer(text):
            prepared, u = None, self.router.understand(text, classify=False)  # "2", "干皮": no model needed
        else:
            prepared = conv.prepare(conn, cid, text, pending_question=asked.question if asked else None,
                                    offline=offline) if conv else None
            u = prepared.understanding if prepared else self.router.understand(text)
        if u.intent == "unsubscribe":
            self._unsubscribe(conn, effects, cid, customer, at, key)
            return
        if customer.get("bot_paused"):  # a human has the conversation: only the SOP's own question is answered
            if waiting is not None and parsed is not None and parsed.ok:
                self._resume(effects, waiting, cid, "answer", text, at, key)
            else:
                self._acknowledge_paused(conn, effects, cid, at, key)
            return

        def turn() -> None:
            if conv is not None:
                conv.turn(conn, effects, cid, text, key=key, at=at, prepared=prepared, offline=offline)

        if waiting is not None and asked is not None and parsed is not None:
            if self._answer(conn, effects, cid, text, u, waiting, asked, parsed, at, key, turn):
                return
        elif waiting is None and not self._escalates(u):  # a complaint or reaction is never a late answer
            asks = u.intent in QUESTION_INTENTS  # a late answer inside a question is recorded, the question answered
            if self._late_answer(conn, effects, cid, text, at, key, acknowledge=not asks) and not asks:
                return
        exit_runs(conn, deps, effects, cid, at=at, event="replied")
        groups = deps.library.catalog.intents.groups_of(u.intent)
        if "complaint" in groups or u.intent == "abuse":
            exit_runs(conn, deps, effects, cid, at=at, event="complained")
        if not self._open_incident(conn, cid) or "complaint" in groups:
            self._prefill(conn, effects, cid, text, u, {u.intent, *groups}, at, key)
            for intent in [u.intent, *sorted(groups)]:
                fire(conn, deps, effects, cid, CustomerEvent("message_intent", f"{intent}@{key}", at,
                                                             {"intent": intent}))
        if waiting is not None and waiting[3] == "chat" and u.intent in ("bye", "thanks"):
            run_id, sop_id, token, _ = waiting
            effects.schedule(key=f"{run_id}/chat-end/{key}", kind="resume", due_at=at, run_id=run_id, customer_id=cid,
                             sop_id=sop_id, payload={"token": token, "kind": "chat_end"})
        turn()

    def _answer(self, conn: Connection, effects: Effects, cid: str, text: str, u: Understanding,
                waiting: tuple[str, str, str, str], asked: AskStep, parsed: Parsed, at: datetime, key: str,
                turn: Callable[[], None]) -> bool:
        """A message while a question waits. True when handled here; False lets it through as free chat
        (a complaint or a request for a human leaves the question waiting)."""
        run_id, sop_id, token, _ = waiting
        spec = self.deps.library.sops[sop_id]
        today = self.deps.shop.local_date(at)
        others = {} if names_a_product(u.intent, u.normalised) else self._other_answers(spec, asked, text, today)
        valid = parsed.ok or parsed.skipped
        if u.intent in ESCAPES and (not valid or (u.intent != "human" and (u.codes or _OURS.search(u.normalised)))):
            # a complaint about what we sold is never a questionnaire answer, even one that reads like one ("用了你家
            # 修护霜脸泛红刺痛" is no 敏感肌 answer): the question waits, the incident is handled. A story about
            # the skin ("之前用网红精华烂脸了") still answers it
            return False
        send = self.conversation.send if self.conversation is not None else None
        question = render_question(self.deps, conn, cid, asked)
        if not valid and (u.intent == "stop_asking" or "stop_asking" in u.also):
            self._resume(effects, waiting, cid, "stop", text, at, key)
            decline_questions(conn, cid, until=at + timedelta(days=QUESTIONS_DECLINED_DAYS))
            if u.intent in QUESTION_INTENTS:  # "别问了，直接推荐个面霜": stop asking, and answer
                turn()
            elif send:
                send(conn, effects, cid, self._t("questionnaire_stopped"), key=key, at=at, meta={"stop": token})
            return True
        for slot, (step, value, tags) in others.items():  # later questions this message already answers
            record_answer(conn, effects, cid, slot, value, source=f"msg:{key}", method="answer", confidence=0.9, at=at)
            change_tags(conn, self.deps, effects, cid, tags, [], source=f"answer:{run_id}/{step.id}|msg:{key}", at=at)
        empty = not u.normalised.strip(" .!~,") or bool(_EMOJI_ONLY.match(u.normalised))
        if not valid and not others and (u.intent in HOLDING or empty):
            if send:
                lead = {"hold_on": "hold_on", "repeat_question": "repeat_question"}.get(u.intent,
                                                                                     "greeting_in_questionnaire")
                text_out = self._t(lead) if u.intent == "hold_on" else f"{self._t(lead)}{question}"
                send(conn, effects, cid, text_out, key=key, at=at, meta={"holding": token})
            return True
        # a question asked instead of an answer is answered (then the question asked again), even one the router
        # cannot place ("你们这个是哪个工厂生产的"): it is no invalid answer to re-ask over
        asks_too = u.is_question and (u.intent in QUESTION_INTENTS or (not valid and u.intent == "unknown"))
        if not valid and (asks_too or others):
            if asks_too:
                turn()
            if send:
                send(conn, effects, cid, self._t("digression_reask", question=question), key=f"{key}/reask", at=at,
                     meta={"reask": token})
            return True
        self._resume(effects, waiting, cid, "answer", text, at, key)
        if valid and asks_too and not parsed.skipped:
            turn()
        return True

    @staticmethod
    def _resume(effects: Effects, waiting: tuple[str, str, str, str], cid: str, kind: str, text: str, at: datetime,
                key: str) -> None:
        """Resume the waiting question's run with the customer's answer (``kind`` answer) or "stop asking"."""
        run_id, sop_id, token, _ = waiting
        payload = {"token": token, "kind": kind, "event": key} | ({"text": text} if kind == "answer" else {})
        effects.schedule(key=f"{run_id}/{kind}/{key}", kind="resume", due_at=at, run_id=run_id, customer_id=cid,
                         sop_id=sop_id, payload=payload)

    @staticmethod
    def _plain_answer(text: str) -> bool:
        """A short message that asks nothing besides the (valid) answer it gives: no classifier is needed."""
        normalised = normalise(text)
        return len(normalised) <= 12 and not _ASKS.search(normalised)

    def _other_answers(self, spec: Any, asked: AskStep, text: str,
                       today: date) -> dict[str, tuple[AskStep, Any, list[str]]]:
        """Answers to the SOP's other questions in the same message, by explicit words only (never "2")."""
        found: dict[str, tuple[AskStep, Any, list[str]]] = {}
        profile = self.deps.library.catalog.profile.facts
        normalised = normalise(text)
        if _BARE_CHOICE.fullmatch(normalised):
            return found
        for step in spec.steps:
            if not isinstance(step, AskStep) or step.id == asked.id or step.slot == asked.slot:
                continue
            if step.answer.type == "choice":
                parsed = parse_answer(step.answer, text, today, profile.get(step.slot))
                if parsed.ok and not _ORDINAL_ONLY.search(normalised):
                    found[step.slot] = (step, parsed.value, parsed.tags)
            elif step.answer.type == "number" and _AMOUNT_CONTEXT.search(normalised):
                amount = parse_amount(normalised)
                if amount is not None:
                    value = int(amount.value) if float(amount.value).is_integer() else amount.value
                    found[step.slot] = (step, value, [])
        return found

    def _escalates(self, u: Understanding) -> bool:
        """Clearly an incident, complaint, abuse or a request for a person: handled as such, never as a profile
        answer (a weak reading yields to the answer: "不好意思刚看到 我是混合皮" is not a missing item)."""
        return u.confidence >= ESCALATE_CONFIDENCE and (
            u.intent in ESCAPES or "complaint" in self.deps.library.catalog.intents.groups_of(u.intent))

    def _late_answer(self, conn: Connection, effects: Effects, cid: str, text: str, at: datetime, key: str,
                     acknowledge: bool = True) -> bool:
        """An answer to a question that already timed out: recorded (fact + tags) and acknowledged. The question
        that timed out last (within ``LATE_WINDOW``) also takes what only answers make sense for: a bare choice
        ("1") or a short amount without a currency word ("大概三百吧", "一百多")."""
        normalised = normalise(text)
        bare = bool(_BARE_CHOICE.fullmatch(normalised))
        rows = conn.execute(select(_R.id, _R.sop_id).where(_R.customer_id == cid).order_by(_R.started_at.desc())
                            .limit(5)).all()
        today = self.deps.shop.local_date(at)
        profile = self.deps.library.catalog.profile.facts
        t = TimelineEntry.__table__.c
        last = conn.execute(select(t.key).where(t.run_id.in_([r for r, _ in rows]), t.kind == "ask_timeout",
                                                t.at >= as_utc(at) - LATE_WINDOW).order_by(t.at.desc(), t.id.desc())
                            ).scalar() if rows else None
        if bare and last is None:
            return False
        short_amount = len(normalised) <= 12 and not _ASKS.search(normalised)
        recorded = []
        last_step: AskStep | None = None  # the question that timed out last
        for run_id, sop_id in rows:
            spec = self.deps.library.sops.get(sop_id)
            if spec is None:
                continue
            timed_out = {k for (k,) in conn.execute(select(t.key).where(t.run_id == run_id, t.kind == "ask_timeout"))}
            for step in spec.steps:
                if not isinstance(step, AskStep) or not any(str(k).startswith(f"{run_id}/{step.id}/") for k in timed_out):
                    continue
                latest = last is not None and str(last).startswith(f"{run_id}/{step.id}/")
                last_step = step if latest else last_step
                if step.answer.type not in ("choice", "number") or current_fact(conn, cid, step.slot) is not None:
                    continue
                if bare and not latest:
                    continue
                if step.answer.type == "number" and not _AMOUNT_CONTEXT.search(normalised) and \
                        not (latest and short_amount):
                    continue
                parsed = parse_answer(step.answer, text, today, profile.get(step.slot))
                if not parsed.ok:
                    continue
                record_answer(conn, effects, cid, step.slot, parsed.value, source=f"{run_id}/{step.id}/late",
                              method="answer", confidence=0.9, at=at)
                change_tags(conn, self.deps, effects, cid, parsed.tags, [], source=f"late:{run_id}/{step.id}", at=at)
                label = profile[step.slot].label if step.slot in profile else step.slot
                recorded.append(self._t("late_answer", label=label, value=parsed.value))
        if not recorded and short_amount and last_step is not None and (  # "保密" / "不太清楚": fine, not a query
                parse_answer(last_step.answer, text, today).skipped or _UNSURE.search(normalised)):
            recorded.append(self._t("late_decline"))
        if recorded and acknowledge and self.conversation is not None:
            self.conversation.send(conn, effects, cid, "\n".join(recorded), key=key, at=at, meta={"late": True})
        return bool(recorded)

    def _prefill(self, conn: Connection, effects: Effects, cid: str, text: str, u: Understanding, intents: set[str],
                 at: datetime, key: str) -> None:
        """Questions of the SOPs this message starts that the message itself answers (``prefill``): the order
        written in it, or the incident it describes — so the complaint flow does not ask for them again."""
        for spec in self.deps.library.sops.values():
            if not spec.enabled or not any(getattr(t, "intents", None) and intents & set(t.intents)
                                           for t in spec.triggers):
                continue
            for step in spec.steps:
                if not isinstance(step, AskStep) or step.prefill is None:
                    continue
                value = (u.codes or u.phones or [None])[0] if step.prefill == "order" else \
                    (text if u.intent in INCIDENT_INTENTS else None)
                if value:
                    record_answer(conn, effects, cid, step.slot, value, source=f"msg:{key}", method="message",
                                  confidence=0.9, at=at)

    def _open_incident(self, conn: Connection, cid: str) -> bool:
        """Whether a run of an SOP that suppresses marketing (complaint handling) is live for the customer."""
        sops = self.deps.library.sops
        rows = conn.execute(select(_R.sop_id).where(_R.customer_id == cid, _R.status.in_(LIVE))).all()
        return any(sops.get(sop_id) is not None and sops[sop_id].suppresses_marketing for (sop_id,) in rows)

    def _unsubscribe(self, conn: Connection, effects: Effects, cid: str, customer: dict[str, Any], at: datetime,
                     key: str) -> None:
        if customer.get("unsubscribed_at") is None:
            conn.execute(update(Customer.__table__).where(_C.id == cid).values(unsubscribed_at=as_utc(at)))
            effects.note(customer_id=cid, at=at, kind="unsubscribed", key=f"unsub/{key}",
                         summary="客户退订：营销推送立即停止")
            effects.send(key=f"reply/{key}", action="message", customer_id=cid, at=at,
                         payload={"text": "好的，已为您退订活动消息，之后不会再打扰您～有问题随时找我们。"})
        exit_runs(conn, self.deps, effects, cid, at=at, event="unsubscribed")

    def _acknowledge_paused(self, conn: Connection, effects: Effects, cid: str, at: datetime, key: str) -> None:
        """A human has the conversation: the bot does not answer, but the customer is never met with silence
        (one acknowledgement per 10 minutes)."""
        effects.note(customer_id=cid, at=at, kind="paused", key=f"paused/{key}",
                     summary="人工处理中：机器人不回复，消息留给人工")
        t = TimelineEntry.__table__.c
        recent = conn.execute(select(t.at).where(t.customer_id == cid, t.kind == "paused_ack")
                              .order_by(t.at.desc()).limit(1)).scalar()
        if recent is not None and as_utc(recent) > as_utc(at) - timedelta(minutes=10):
            return
        if self.conversation is not None:
            self.conversation.send(conn, effects, cid, self._t("handoff_waiting"), key=key, at=at,
                                   meta={"paused": True})
        effects.note(customer_id=cid, at=at, kind="paused_ack", key=f"paused-ack/{key}", summary="已告知客户人工稍后回复")

    def _t(self, name: str, **values: Any) -> str:
        return reply_text(self.deps.library.catalog, name, **values)

    def _asked_step(self, waiting: tuple[str, str, str, str]) -> AskStep | None:
        spec = self.deps.library.sops.get(waiting[1])
        step_id = waiting[2].split(":")[1] if waiting[2] else ""
        step = spec.steps_by_id.get(step_id) if spec else None
        return step if isinstance(step, AskStep) else None

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

    def _imported(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime,
                  key: str) -> None:
        """A contact the corp already had, brought in by ``sopagent wecom sync``: only SOPs that opt in react."""
        fire(conn, self.deps, effects, cid, CustomerEvent("contact_imported", key, at, dict(p)))

    def _task_done(self, conn: Connection, effects: Effects, cid: str, p: dict[str, Any], at: datetime,
                   key: str) -> None:
        """A person completed a task about this customer (a handoff handled): runs waiting for it go on
        (the complaint SOP surveys satisfaction only after somebody actually handled the complaint)."""
        effects.note(customer_id=cid, at=at, kind="task_done", key=f"task/{key}",
                     summary=f"员工完成任务：{p.get('title', '')}".rstrip("："))
        self._wake(conn, effects, cid, "task_completed", at, key)

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
