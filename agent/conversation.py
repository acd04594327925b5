"""One free-chat turn: understand, update profile and tags, look up facts for this customer, reply.

The reply goes out through the outbox as a service message (not marketing). If the configured brain
is unavailable after its retry policy, the offline brain answers and a human is asked to review.
Two unanswered turns in a row open a human handoff.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from agent import memory
from agent.brain import Brain, BrainUnavailable
from agent.profile import apply_turn
from agent.tables import Message
from agent.tools import CustomerTools
from agent.understanding import Facts, Reply, TurnInput, Understanding
from knowledge.db import insert_ignore
from knowledge.embeddings import Embedder
from knowledge.retriever import Retriever
from sop_graphs.actions import open_handoff
from sop_graphs.customers import load_customer, tags_of
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects

UNANSWERED_LIMIT = 2


@dataclass
class TurnResult:
    understanding: Understanding
    reply: Reply
    facts: Facts
    handoff: str | None = None
    brain: str = ""


class Conversation:
    """Runs turns with an injected brain, offline fallback, retriever and embedder."""

    def __init__(self, deps: Deps, brain: Brain, fallback: Brain, retriever: Retriever | None,
                 embedder: Embedder | None) -> None:
        self.deps = deps
        self.brain = brain
        self.fallback = fallback
        self.retriever = retriever
        self.embedder = embedder
        self.stats: dict[str, int] = defaultdict(int)  # turns, llm_errors, handoffs (read by /metrics)
        self.durations: deque[float] = deque(maxlen=10_000)  # seconds per turn, drained by /metrics

    def turn(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
             pending_question: str | None = None) -> TurnResult:
        """Understand ``text``, gather the customer's facts, reply (outbox), update profile and memory."""
        started = time.perf_counter()
        result = self._turn(conn, effects, customer_id, text, key=key, at=at, pending_question=pending_question)
        self.durations.append(time.perf_counter() - started)
        self.stats["turns"] += 1
        self.stats["llm_errors"] += result.brain != self.brain.name
        self.stats["handoffs"] += result.handoff is not None
        return result

    def _turn(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
              pending_question: str | None = None) -> TurnResult:
        customer = load_customer(conn, customer_id) or {}
        mem = memory.load(conn, customer_id)
        turn = TurnInput(text=text, name=customer.get("name", ""), tags=tuple(sorted(tags_of(conn, customer_id))),
                         taxonomy=tuple(sorted(self.deps.library.catalog.tags)), memory=mem["summary"],
                         remembered_products=tuple(p["name"] for p in mem["products"]),
                         pending_question=pending_question)
        vector = self.embedder.query(text) if self.embedder is not None and text.strip() else None
        brain, failed = self.brain, None
        try:
            understanding = brain.understand(turn, vector)
        except BrainUnavailable as exc:
            brain, failed = self.fallback, str(exc)
            understanding = brain.understand(turn, vector)
        apply_turn(conn, self.deps, effects, customer_id, text, understanding, source=f"msg:{key}",
                   method="rule" if brain is self.fallback or brain.name == "offline" else "model", at=at)
        tools = CustomerTools(conn, self.retriever, customer_id)
        facts = tools.gather(text, understanding, vector, turn.remembered_products)
        try:
            reply = brain.reply(turn, understanding, facts)
        except BrainUnavailable as exc:
            brain, failed = self.fallback, failed or str(exc)
            reply = brain.reply(turn, understanding, facts)
        mem = memory.remember(conn, mem, understanding, facts, reply, at)
        handoff = None
        if failed:
            handoff = f"模型服务不可用（{failed[:80]}），已用离线应答，请人工复核"
        elif understanding.intent == "human" or understanding.needs_human:
            handoff = "客户要求人工服务"
        elif mem["unanswered_streak"] >= UNANSWERED_LIMIT:
            handoff = f"连续 {mem['unanswered_streak']} 次未能回答客户问题"
        if handoff:
            open_handoff(conn, effects, customer_id, key=f"handoff/{key}", at=at, assignee="advisor",
                         title=handoff, instructions=f"客户最近的消息：{text}\n记忆：{mem['summary']}",
                         due_in="30m", pause_bot=not failed)
            if understanding.intent != "human" and not failed:
                reply = Reply(text=f"{reply.text}\n已为您转接人工客服，顾问会尽快回复您～", grounded=reply.grounded)
        self.send(conn, effects, customer_id, reply.text, key=key, at=at,
                  meta={"intent": understanding.intent, "grounded": reply.grounded, "brain": brain.name,
                        "tools": tools.calls})
        return TurnResult(understanding, reply, facts, handoff, brain.name)

    def send(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
             meta: dict | None = None) -> None:
        """A service reply: outbox (exactly once) + transcript + timeline."""
        effects.send(key=f"reply/{key}", action="message", customer_id=customer_id, at=at, payload={"text": text},
                     mode="kf", marketing=False)
        insert_ignore(conn, Message.__table__, [{"key": f"out/{key}", "customer_id": customer_id, "direction": "out",
                                                 "text": text, "at": at, "meta": meta or {}}])
        effects.note(customer_id=customer_id, at=at, kind="reply", key=f"reply/{key}", summary=f"回复：{text}")
