"""The console's chat simulator: an operator plays a customer against the agent, turn by turn.

Each session is a :class:`~api.throwaway.ThrowawayShop` running the shop's SOPs (all of them, or the ones
chosen) on a simulated clock. Every turn reports what changed: the agent's replies and SOP sends, the runs and
their current steps, tags added and removed, the stage and profile facts. Sessions are few and short-lived: at
most :data:`MAX_SESSIONS` at once (the least recently used is closed to make room), each closed after
:data:`IDLE` without a turn, and all of them when the service stops."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Engine, select, update

from agent.inbound import submit
from api.test_run import TestCustomer, shop_local
from api.throwaway import ThrowawayShop
from knowledge.clock import as_utc
from knowledge.embeddings import Embedder
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag, ProfileFact, TimelineEntry
from sop_graphs.channel import shown_text
from sop_graphs.loader import Library
from sop_graphs.spec import parse_duration
from sop_graphs.tables import Outbox, SopRun

MAX_SESSIONS = 4
IDLE = 30 * 60  # seconds
MAX_TURNS = 60
CUSTOMER = "sim_customer"
SHOWN = ("answer", "answer_invalid", "ask_timeout", "handoff", "deferred", "cancelled", "enrolled", "end", "exited",
         "coupon_skipped", "branch", "stage", "escalation", "bot_paused")


class SimStart(BaseModel):
    customer: TestCustomer = Field(default_factory=TestCustomer)
    sops: list[str] | None = Field(default=None, max_length=100, description="the SOPs to run (default: all running)")
    start: datetime | None = Field(default=None, description="simulated start (default: now); without a UTC "
                                   "offset it is the shop's local time")


class SimMessage(BaseModel):
    text: str = Field(min_length=1, max_length=500)
    after: str = Field(default="1m", description="simulated time since the previous turn, e.g. 1m, 2h, 1d")
    wait: str = Field(default="5m", description="how long to let the agent run after the message")

    @field_validator("after", "wait")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) > timedelta(days=30):
            raise ValueError("at most 30d")
        return value


class SimSend(BaseModel):
    at: datetime
    step_id: str | None
    action: str | None
    text: str


class SimRun(BaseModel):
    sop_id: str
    status: str
    current_step: str | None
    waiting_kind: str | None


class SimEvent(BaseModel):
    at: datetime
    kind: str
    text: str


class SimTurn(BaseModel):
    index: int
    text: str | None = Field(description="the customer's message; None for the moment they add the shop")
    at: datetime
    replies: list[SimSend]
    events: list[SimEvent]
    runs: list[SimRun]
    steps_changed: list[str] = Field(description="'sop_id: before → after' for each run whose step moved")
    tags: list[str]
    tags_added: list[str]
    tags_removed: list[str]
    stage: str
    stage_before: str
    facts: dict[str, str]


class SimSessionOut(BaseModel):
    session_id: str
    turns: list[SimTurn]


class SessionLimit(Exception):
    """The session has played :data:`MAX_TURNS` turns."""


class _Session:
    def __init__(self, shop: ThrowawayShop) -> None:
        self.shop = shop
        self.lock = threading.Lock()
        self.used = time.monotonic()
        self.turns: list[SimTurn] = []
        self.outbox_seen = 0
        self.timeline_seen = 0


class Simulator:
    """The live simulator sessions of one process."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, settings: Settings, library: Library, engine: Engine, body: SimStart, *, now: datetime,
              embedder: Embedder | None = None) -> SimSessionOut:
        chosen = set(body.sops) if body.sops is not None else None
        sops = {i: s for i, s in library.sops.items() if chosen is None or i in chosen}
        only = Library(sops=sops, catalog=library.catalog, sources={i: library.sources[i] for i in sops})
        start = as_utc(shop_local(body.start, settings.shop_timezone) or now)
        shop = ThrowawayShop(settings, only, engine, start=start, embedder=embedder, prefix="sopagent-simulator-")
        session = _Session(shop)
        try:
            turn = self._first_turn(session, body.customer, start)
        except BaseException:
            shop.close()
            raise
        session_id = secrets.token_urlsafe(12)
        with self._lock:
            self._sweep()
            while len(self._sessions) >= MAX_SESSIONS:
                _, oldest = self._sessions.popitem(last=False)
                oldest.shop.close()
            self._sessions[session_id] = session
        return SimSessionOut(session_id=session_id, turns=[turn])

    def say(self, session_id: str, body: SimMessage) -> SimSessionOut | None:
        """Play one customer message; None for an unknown or expired session."""
        with self._lock:
            self._sweep()
            session = self._sessions.get(session_id)
            if session is None:
                return None
            self._sessions.move_to_end(session_id)
            session.used = time.monotonic()
        with session.lock:
            if len(session.turns) > MAX_TURNS:
                raise SessionLimit(f"a simulation holds at most {MAX_TURNS} turns: start a new one")
            runtime, clock = session.shop.runtime, session.shop.clock
            at = clock.now() + parse_duration(body.after)
            runtime.run_until(at)
            before = _state(runtime.deps.engine)
            index = len(session.turns)
            submit(runtime.deps, key=f"sim/{index}", customer_id=CUSTOMER, kind="message",
                   payload={"text": body.text}, at=at)
            runtime.run_until(at + parse_duration(body.wait))
            turn = self._turn(session, index, body.text, at, before)
            session.turns.append(turn)
            return SimSessionOut(session_id=session_id, turns=list(session.turns))

    def end(self, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        with session.lock:
            session.shop.close()
        return True

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for session in sessions:
            with session.lock:
                session.shop.close()

    def _sweep(self) -> None:
        cutoff = time.monotonic() - IDLE
        for session_id in [i for i, s in self._sessions.items() if s.used < cutoff]:
            self._sessions.pop(session_id).shop.close()

    def _first_turn(self, session: _Session, c: TestCustomer, start: datetime) -> SimTurn:
        runtime = session.shop.runtime
        before = {"stage": c.stage, "tags": [], "runs": {}, "facts": {}}
        submit(runtime.deps, key="sim/added", customer_id=CUSTOMER, kind="customer_added", at=start,
               payload={"name": c.name, "owner": c.owner, "channel_code": c.channel_code, "tags": list(c.tags),
                        "attributes": dict(c.attributes)})
        runtime.run_until(start)
        if c.stage != "new":
            with runtime.deps.engine.begin() as conn:
                conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == CUSTOMER).values(stage=c.stage))
        runtime.run_until(start + timedelta(minutes=1))
        turn = self._turn(session, 0, None, start, before)
        session.turns.append(turn)
        return turn

    def _turn(self, session: _Session, index: int, text: str | None, at: datetime,
              before: dict[str, Any]) -> SimTurn:
        deps = session.shop.runtime.deps
        local = deps.shop.local
        after = _state(deps.engine)
        o, t = Outbox.__table__.c, TimelineEntry.__table__.c
        with deps.engine.connect() as conn:
            sent = conn.execute(select(o.id, o.sent_at, o.step_id, o.action, o.payload).where(
                o.customer_id == CUSTOMER, o.status == "sent", o.id > session.outbox_seen).order_by(o.id)).all()
            events = conn.execute(select(t.id, t.at, t.kind, t.summary).where(
                t.customer_id == CUSTOMER, t.id > session.timeline_seen).order_by(t.id)).all()
        if sent:
            session.outbox_seen = sent[-1][0]
        if events:
            session.timeline_seen = events[-1][0]
        replies = [SimSend(at=local(sent_at), step_id=step_id, action=action,
                           text=shown_text(p)[:1000])
                   for _, sent_at, step_id, action, p in sent]
        moved = [f"{sop}: {before['runs'].get(sop, '（未开始）')} → {step or '（结束）'}"
                 for sop, step in after["runs"].items() if before["runs"].get(sop) != step]
        return SimTurn(index=index, text=text, at=local(at), replies=replies,
                       events=[SimEvent(at=local(a), kind=k, text=s[:500]) for _, a, k, s in events if k in SHOWN],
                       runs=after["run_rows"], steps_changed=moved, tags=after["tags"],
                       tags_added=[x for x in after["tags"] if x not in before["tags"]],
                       tags_removed=[x for x in before["tags"] if x not in after["tags"]],
                       stage=after["stage"], stage_before=before["stage"], facts=after["facts"])


def _state(engine: Engine) -> dict[str, Any]:
    """The simulated customer's stage, tags, runs (sop → current step) and current facts."""
    c, tg, r, f = (Customer.__table__.c, CustomerTag.__table__.c, SopRun.__table__.c, ProfileFact.__table__.c)
    with engine.connect() as conn:
        stage = conn.execute(select(c.stage).where(c.id == CUSTOMER)).scalar() or "new"
        tags = list(conn.execute(select(tg.tag).where(tg.customer_id == CUSTOMER).order_by(tg.tag)).scalars())
        runs = conn.execute(select(r.sop_id, r.status, r.current_step, r.waiting_kind).where(
            r.customer_id == CUSTOMER).order_by(r.started_at)).all()
        facts = conn.execute(select(f.key, f.value).where(f.customer_id == CUSTOMER, f.current.is_(True))).all()
    run_rows = [SimRun(sop_id=s, status=st, current_step=step, waiting_kind=w) for s, st, step, w in runs]
    return {"stage": stage, "tags": tags, "facts": {k: str(v) for k, v in facts}, "run_rows": run_rows,
            "runs": {x.sop_id: (x.current_step if x.status in ("active", "scheduled") else None) for x in run_rows}}
