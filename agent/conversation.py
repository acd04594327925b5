"""One free-chat turn: understand once, update profile and tags, look up facts for this customer, reply.

The reply goes out through the outbox as a service message (not marketing). If the configured brain
is unavailable after its retry policy, the offline brain answers; a circuit breaker (agent/breaker.py)
counts consecutive failures, and once it opens turns use the offline brain without calling the
endpoint until a probe after the cool-down succeeds. One review task is opened per outage, not per
failed turn. A reply the guardrails reject is not an outage: the offline brain answers and that turn
is reviewed.
A reply that promises a follow-up creates the task it promises; incidents and abuse hand off; two
unanswered turns in a row open a human handoff.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from agent import memory
from agent.brain import Brain, BrainUnavailable, ReplyRejected
from agent.breaker import CircuitBreaker
from agent.prefetch import Drafted, MemoBrain
from agent.profile import apply_turn, current_facts
from agent.router import Router
from agent.tables import Message
from agent.tools import CustomerTools
from agent.understanding import QUESTION_INTENTS, Facts, Reply, TurnInput, Understanding
from knowledge.db import insert_ignore
from knowledge.embeddings import Embedder
from knowledge.retriever import Retriever
from knowledge.tables import Document
from knowledge.text import normalise
from sop_graphs.actions import open_handoff
from sop_graphs.customers import load_customer, tags_of
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects

UNANSWERED_LIMIT = 2
ROUTING_MEMO = 1024  # router readings kept by text
# intent -> (task title, pause the bot, due): the reply to these promises a person will follow up
INCIDENT_TASKS = {"adverse_reaction": ("客户反馈使用后不良反应（加急）", True, "15m"),
                  "damaged": ("客户反馈商品破损", False, "2h"), "missing_item": ("客户反馈少件/错发", False, "2h"),
                  "quality_issue": ("客户反馈商品质量问题", False, "2h"), "abuse": ("客户情绪激动，请人工安抚", True, "30m")}


@dataclass
class TurnResult:
    understanding: Understanding
    reply: Reply
    facts: Facts
    handoff: str | None = None
    brain: str = ""


@dataclass
class Prepared:
    """What a turn knows before it replies: the input, the one understanding, and which brain gave it."""

    turn: TurnInput
    understanding: Understanding
    vector: np.ndarray | None
    brain: Brain
    failed: str | None = None
    facts: Facts | None = None  # looked up when the turn was drafted: the reply was made from these
    tool_calls: tuple[dict[str, Any], ...] = ()
    usage: tuple[int, int] = (0, 0)  # model calls and tokens


class Conversation:
    """Runs turns with an injected brain, offline fallback, retriever and embedder."""

    def __init__(self, deps: Deps, brain: Brain, fallback: Brain, retriever: Retriever | None,
                 embedder: Embedder | None, breaker: CircuitBreaker | None = None) -> None:
        self.deps = deps
        self.brain = brain
        self.fallback = fallback
        settings = deps.settings
        self.breaker = breaker or CircuitBreaker(deps.clock, threshold=settings.llm_breaker_failures,
                                                 cooldown=timedelta(seconds=settings.llm_breaker_cooldown_seconds))
        self.retriever = retriever
        self.embedder = embedder
        self.router = Router(deps.library.catalog, embedder=embedder, cache_dir=deps.settings.home / "models")
        self.stats: dict[str, int] = defaultdict(int)  # turns, llm_errors, handoffs (read by /metrics)
        self.durations: deque[float] = deque(maxlen=10_000)  # seconds per turn, drained by /metrics
        self._doc_index: tuple[str, dict[str, list[str]]] = ("", {})
        self._routing: OrderedDict[tuple[str, tuple[str, ...]], tuple[np.ndarray | None, Understanding]] = \
            OrderedDict()
        self._routing_lock = threading.Lock()
        # drafts wait for the model by the dozen but compute one at a time: dozens of threads computing at once
        # would queue every other thread of the process (the pump, operator requests) behind them for the GIL
        self._thinking = threading.Lock()

    def doc_index(self, conn: Connection) -> dict[str, list[str]]:
        """FAQ/policy entries by the intent their title asks about, recomputed when the documents change."""
        rows = conn.execute(select(Document.__table__.c.id, Document.__table__.c.title)
                            .order_by(Document.__table__.c.id)).all()
        digest = hashlib.sha256("\n".join(f"{i}\t{t}" for i, t in rows).encode()).hexdigest()
        if digest != self._doc_index[0]:
            index: dict[str, list[str]] = defaultdict(list)
            classifier = self.router.classifier
            for doc_id, title in rows if classifier is not None else []:
                prediction = classifier.predict(normalise(title))
                for intent, probability in prediction.ranked[:2]:
                    if probability >= 0.25:
                        index[intent].append(doc_id)
            self._doc_index = (digest, dict(index))
        return self._doc_index[1]

    def prepare(self, conn: Connection, customer_id: str, text: str, *,
                pending_question: str | None = None, offline: bool = False) -> Prepared:
        """Read what the turn needs and understand the message once (router, then the brain's refinement).
        Inside a write transaction an LLM turn takes its draft (agent/prefetch.py) instead of calling; ``offline``
        answers with the offline brain (a turn whose inputs kept changing while it was drafted)."""
        turn, vector, routed = self._inputs(conn, customer_id, text, pending_question)
        brain: Brain = self.brain
        if brain is self.fallback or offline:
            return Prepared(turn, self.fallback.understand(turn, vector, routed), vector, self.fallback)
        drafted = brain.take_drafted(turn, routed) if isinstance(brain, MemoBrain) else None
        drafted = drafted or self._understand(brain, turn, vector, routed)
        return Prepared(turn, drafted.understanding, vector, brain if drafted.used_model else self.fallback,
                        drafted.failed, drafted.facts, drafted.tool_calls, drafted.usage)

    def _understand(self, brain: Brain, turn: TurnInput, vector: np.ndarray | None,
                    routed: Understanding) -> Drafted:
        """The circuit's decision and, if it lets the call out, the model's understanding."""
        if not self.breaker.allow():  # the circuit is open: the offline brain answers, no call, no new task
            return Drafted(routed, used_model=False)
        try:
            understanding = brain.understand(turn, vector, routed)
        except BrainUnavailable as exc:
            self.breaker.record_failure(str(exc))
            return Drafted(routed, used_model=False, failed=str(exc))
        self.breaker.record_success()
        return Drafted(understanding, used_model=True)

    def _inputs(self, conn: Connection, customer_id: str, text: str,
                pending_question: str | None) -> tuple[TurnInput, np.ndarray | None, Understanding]:
        """The brain's input for a message, its sentence vector and the router's resolved understanding."""
        customer = load_customer(conn, customer_id) or {}
        mem = memory.load(conn, customer_id)
        turn = TurnInput(text=text, name=customer.get("name", ""), tags=tuple(sorted(tags_of(conn, customer_id))),
                         taxonomy=tuple(sorted(self.deps.library.catalog.tags)), memory=mem["summary"],
                         remembered_products=tuple(p["name"] for p in mem["products"]),
                         pending_question=pending_question, facts=current_facts(conn, customer_id))
        vector, routed = self._routed(text, turn.taxonomy)
        return turn, vector, CustomerTools(conn, self.retriever, customer_id).resolve(routed)

    def _routed(self, text: str, taxonomy: tuple[str, ...]) -> tuple[np.ndarray | None, Understanding]:
        """The router's reading of ``text``: a pure function of the text and the taxonomy, so a drafted turn's
        write transaction reuses its draft's instead of routing again (bounded, most recent kept)."""
        key = (text, taxonomy)
        with self._routing_lock:
            hit = self._routing.get(key)
            if hit is not None:
                self._routing.move_to_end(key)
                return hit[0], hit[1].model_copy(deep=True)
        vector = self.router.vector(text)
        routed = self.router.understand(text, taxonomy=set(taxonomy), vector=vector)
        with self._routing_lock:
            self._routing[key] = (vector, routed.model_copy(deep=True))
            while len(self._routing) > ROUTING_MEMO:
                self._routing.popitem(last=False)
        return vector, routed

    def draft(self, engine: Engine, customer_id: str, text: str, *, pending_question: str | None,
              at: datetime) -> None:
        """Make this message's model calls now, before its write transaction, and keep them for the turn
        (agent/prefetch.py): the circuit's decision, the understanding, the facts and the reply. Reads on short
        connections, none held while the model answers; writes nothing."""
        brain = self.brain
        if not isinstance(brain, MemoBrain):
            return
        usage = getattr(brain.inner, "take_usage", lambda: (0, 0))
        usage()  # what this thread spent before is not this turn's
        with self._thinking, engine.connect() as conn:
            turn, vector, routed = self._inputs(conn, customer_id, text, pending_question)
        drafted = self._understand(brain.inner, turn, vector, routed)
        if drafted.used_model:
            with self._thinking, engine.connect() as conn:
                tools = CustomerTools(conn, self.retriever, customer_id, self.doc_index(conn))
                facts = tools.gather(text, drafted.understanding, vector, turn.remembered_products,
                                     today=self.deps.shop.local_date(at).isoformat())
            drafted = Drafted(drafted.understanding, True, facts=facts, tool_calls=tuple(tools.calls))
            with contextlib.suppress(Exception):  # kept too: the turn handles it (fallback) without calling again
                brain.prefetch_reply(turn, drafted.understanding, facts)
        drafted = dataclasses.replace(drafted, usage=usage())
        brain.keep_drafted(turn, routed, drafted)

    def turn(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
             pending_question: str | None = None, prepared: Prepared | None = None,
             offline: bool = False) -> TurnResult:
        """Understand ``text`` (unless ``prepared``), gather the customer's facts, reply (outbox), update memory."""
        started = time.perf_counter()
        prepared = prepared or self.prepare(conn, customer_id, text, pending_question=pending_question,
                                            offline=offline)
        result = self._turn(conn, effects, customer_id, text, key=key, at=at, prepared=prepared)
        self.durations.append(time.perf_counter() - started)
        self.stats["turns"] += 1
        self.stats["llm_errors"] += result.brain != self.brain.name
        self.stats["handoffs"] += result.handoff is not None
        return result

    def _turn(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
              prepared: Prepared) -> TurnResult:
        turn, understanding, brain, failed = prepared.turn, prepared.understanding, prepared.brain, prepared.failed
        apply_turn(conn, self.deps, effects, customer_id, text, understanding, source=f"msg:{key}",
                   method="rule" if brain is self.fallback or brain.name == "offline" else "model", at=at)
        tools = CustomerTools(conn, self.retriever, customer_id, self.doc_index(conn))
        if prepared.facts is not None:  # drafted: the reply was made from these facts, a moment ago
            facts, tools.calls = prepared.facts, list(prepared.tool_calls)
        else:
            facts = tools.gather(text, understanding, prepared.vector, turn.remembered_products,
                                 today=self.deps.shop.local_date(at).isoformat())
        rejected: str | None = None
        try:
            reply = brain.reply(turn, understanding, facts)
        except ReplyRejected as exc:  # the endpoint answered; the answer was not backed by the facts
            brain, rejected = self.fallback, str(exc)
            reply = brain.reply(turn, understanding, facts)
        except BrainUnavailable as exc:
            self.breaker.record_failure(str(exc))
            brain, failed = self.fallback, failed or str(exc)
            reply = brain.reply(turn, understanding, facts)
        reply = self._more_questions(turn, understanding, reply, tools, prepared, brain, at)
        mem = memory.remember(conn, memory.load(conn, customer_id), understanding, facts, reply, at)
        self._review(conn, effects, customer_id, text, key=key, at=at, failed=failed, rejected=rejected)
        handoff, pause, due = self._handoff(understanding, reply, mem)
        if handoff:
            open_handoff(conn, effects, customer_id, key=f"handoff/{key}", at=at, assignee="advisor",
                         title=handoff, instructions=f"客户最近的消息：{text}\n记忆：{mem['summary']}",
                         due_in=due, pause_bot=pause)
            memory.reset_streak(conn, customer_id)
            if pause and understanding.intent not in ("human", "abuse", "adverse_reaction"):
                reply = Reply(text=f"{reply.text}\n{self.deps.library.catalog.replies.get('handoff_ack', '')}".strip(),
                              grounded=reply.grounded)
        self.send(conn, effects, customer_id, reply.text, key=key, at=at,
                  meta={"intent": understanding.intent, "confidence": understanding.confidence,
                        "question": understanding.is_question,
                        "grounded": reply.grounded, "brain": brain.name, "tools": tools.calls,
                        "llm_failed": bool(failed), "llm_rejected": bool(rejected),
                        "llm_calls": prepared.usage[0], "llm_tokens": prepared.usage[1]})
        return TurnResult(understanding, reply, facts, handoff, brain.name)

    def _more_questions(self, turn: TurnInput, u: Understanding, reply: Reply, tools: CustomerTools,
                        prepared: Prepared, brain: Brain, at: datetime) -> Reply:
        """"玻尿酸面霜多少钱 还有周五直播几点": every question a clause asks gets its answer, in order."""
        extra = [i for i in u.also if i in QUESTION_INTENTS and i != u.intent][:2]
        if not extra or not isinstance(brain, type(self.fallback)):
            return reply  # the LLM brain answers the whole message itself
        texts = [reply.text]
        for intent in extra:
            clause = u.clauses[intent]
            part = u.model_copy(update={"intent": intent, "normalised": clause, "codes": [], "also": [], "clauses": {}})
            facts = tools.gather(clause, part, None, turn.remembered_products,
                                 today=self.deps.shop.local_date(at).isoformat())
            answer = brain.reply(turn, part, facts)
            if answer.grounded and answer.text not in texts:
                texts.append(answer.text)
        return reply.model_copy(update={"text": "\n".join(texts)})

    def _review(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
                failed: str | None, rejected: str | None) -> None:
        """A human reviews what the offline brain said: once per outage, or this turn when its reply was refused."""
        if failed and self.breaker.claim_incident():
            status = self.breaker.status()
            open_handoff(conn, effects, customer_id, key=f"llm-outage/{key}", at=at, assignee="advisor",
                         title=f"模型服务不可用（{failed[:80]}），已切换离线应答，请人工复核",
                         instructions=(f"模型服务调用失败：{failed[:300]}\n连续失败 {self.breaker.threshold} 次后熔断"
                                       f"（当前 {status.consecutive_failures} 次，状态 {status.state}），熔断期间所有会话"
                                       f"由离线应答接待，冷却 {self.breaker.cooldown.total_seconds():g} 秒后试探恢复。"
                                       f"本次故障只开这一个任务，请复核故障期间的会话。\n首个受影响的客户消息：{text}"),
                         due_in="30m", pause_bot=False)
        if rejected:
            open_handoff(conn, effects, customer_id, key=f"llm-rejected/{key}", at=at, assignee="advisor",
                         title=f"模型回复未通过校验（{rejected[:80]}），已用离线应答，请人工复核",
                         instructions=f"客户消息：{text}\n被拒绝的原因：{rejected[:300]}", due_in="30m", pause_bot=False)

    @staticmethod
    def _handoff(u: Understanding, reply: Reply, mem: dict) -> tuple[str | None, bool, str]:
        """(task title, pause the bot, due) for this turn, or no task."""
        if u.intent in INCIDENT_TASKS:
            return INCIDENT_TASKS[u.intent]
        if "abuse" in u.also:  # a complaint thrown with abuse ("什么垃圾店 tmd…"): a person calms it down
            return INCIDENT_TASKS["abuse"]
        if u.intent == "human" or u.needs_human:
            return "客户要求人工服务", True, "30m"
        if reply.follow_up:
            return reply.follow_up, False, "2h"
        if mem["unanswered_streak"] >= UNANSWERED_LIMIT:
            return f"连续 {mem['unanswered_streak']} 次未能回答客户问题", True, "30m"
        return None, False, ""

    def send(self, conn: Connection, effects: Effects, customer_id: str, text: str, *, key: str, at: datetime,
             meta: dict | None = None) -> None:
        """A service reply: outbox (exactly once) + transcript + timeline."""
        effects.send(key=f"reply/{key}", action="message", customer_id=customer_id, at=at, payload={"text": text},
                     mode="kf", marketing=False)
        insert_ignore(conn, Message.__table__, [{"key": f"out/{key}", "customer_id": customer_id, "direction": "out",
                                                 "text": text, "at": at, "meta": meta or {}}])
        effects.note(customer_id=customer_id, at=at, kind="reply", key=f"reply/{key}", summary=f"回复：{text}")
