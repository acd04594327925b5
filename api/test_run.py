"""Test-run an SOP from the editor: one simulated customer, a simulated clock, nothing sent.

The SOP (a draft's YAML, or the running version) runs alone in a throwaway embedded setup — its own SQLite file,
sandbox channel and simulated clock, the shop's catalogue, the offline brain — for a customer the operator
describes, who may answer at given moments. The result is the timeline of what would be sent when, with the
contact policy's deferrals and cancellations and the answers recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Engine, select

from agent.inbound import submit
from agent.runtime import Runtime
from api.throwaway import ThrowawayShop
from knowledge.clock import as_utc
from knowledge.embeddings import Embedder
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag, TimelineEntry
from sop_graphs.channel import shown_text
from sop_graphs.effects import Effects
from sop_graphs.enrolment import schedule_enrolment
from sop_graphs.loader import Library, SopSource
from sop_graphs.spec import SopSpec, parse_duration
from sop_graphs.tables import Outbox

TEST_CUSTOMER = "test_run_customer"
SHOWN = ("enrolled", "deferred", "cancelled", "answer", "answer_invalid", "ask_timeout", "tag", "stage", "handoff",
         "end", "exited", "coupon_skipped", "skipped", "branch", "inbound")


class TestReply(BaseModel):
    after: str = Field(description="how long after the start the customer writes, e.g. 30m, 2h, 1d")
    text: str = Field(min_length=1, max_length=500)

    @field_validator("after")
    @classmethod
    def _duration(cls, value: str) -> str:
        delta = parse_duration(value)
        if delta > timedelta(days=60):
            raise ValueError("at most 60d")
        return value


class TestCustomer(BaseModel):
    name: str = Field(default="测试客户", max_length=64)
    owner: str = Field(default="", max_length=64, description="the employee who follows the customer (跟进人)")
    channel_code: str | None = Field(default=None, max_length=64)
    stage: Literal["new", "active", "customer", "repeat", "silent", "churned"] = "new"
    tags: list[str] = Field(default_factory=list, max_length=50)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=50)


class TestRunIn(BaseModel):
    yaml: str | None = Field(default=None, max_length=200_000, description="a draft; default the running version")
    customer: TestCustomer = Field(default_factory=TestCustomer)
    replies: list[TestReply] = Field(default_factory=list, max_length=30)
    days: int = Field(default=14, ge=1, le=60)
    start: datetime | None = Field(default=None, description="simulated start (default: now); without a UTC "
                                   "offset it is the shop's local time")


def shop_local(start: datetime | None, timezone: str) -> datetime | None:
    """A start without a UTC offset is the shop's wall-clock time (what an operator picks in the console)."""
    if start is None or start.tzinfo is not None:
        return start
    return start.replace(tzinfo=ZoneInfo(timezone))


class TestEvent(BaseModel):
    at: datetime  # shop-local
    kind: str  # send, or a timeline kind (deferred, cancelled, answer, …)
    step_id: str | None = None
    action: str | None = None
    mode: str | None = None
    text: str


class TestRunOut(BaseModel):
    sop_id: str
    start: datetime
    end: datetime
    events: list[TestEvent]


def test_run(settings: Settings, library: Library, spec: SopSpec, source: SopSource, body: TestRunIn, *,
             now: datetime, engine: Engine, embedder: Embedder | None = None) -> TestRunOut:
    """Simulate ``spec`` for the described customer in a throwaway copy of the shop (``engine``'s knowledge)."""
    only = Library(sops={spec.id: spec.model_copy(update={"enabled": True})}, catalog=library.catalog,
                   sources={spec.id: source})
    start = as_utc(shop_local(body.start, settings.shop_timezone) or now)
    with ThrowawayShop(settings, only, engine, start=start, embedder=embedder, prefix="sopagent-test-run-") as shop:
        return _play(shop.runtime, spec, body, start)


def _play(runtime: Runtime, spec: SopSpec, body: TestRunIn, start: datetime) -> TestRunOut:
    deps = runtime.deps
    c = body.customer
    with deps.engine.begin() as conn:
        conn.execute(Customer.__table__.insert().values(id=TEST_CUSTOMER, name=c.name, owner=c.owner, channel_code=c.channel_code,
                                                        stage=c.stage, attributes=dict(c.attributes), added_at=start))
        for tag in dict.fromkeys(c.tags):
            conn.execute(CustomerTag.__table__.insert().values(customer_id=TEST_CUSTOMER, tag=tag, source="test-run",
                                                               created_at=start))
        effects = Effects()
        schedule_enrolment(effects, spec, TEST_CUSTOMER, trigger_key="test-run", due_at=start, reason="编辑器试运行")
        effects.flush(conn)
    for i, reply in enumerate(sorted(body.replies, key=lambda r: parse_duration(r.after))):
        submit(deps, key=f"test-run/{i}", customer_id=TEST_CUSTOMER, kind="message", payload={"text": reply.text},
               at=start + parse_duration(reply.after))
    end = start + timedelta(days=body.days)
    runtime.run_until(end)
    events: list[tuple[datetime, int, TestEvent]] = []
    local = deps.shop.local
    o = Outbox.__table__.c
    with deps.engine.connect() as conn:
        sent = conn.execute(select(o.id, o.sent_at, o.step_id, o.action, o.mode, o.payload).where(
            o.customer_id == TEST_CUSTOMER, o.status == "sent").order_by(o.sent_at, o.id)).all()
    for row_id, at, step_id, action, mode, payload in sent:
        events.append((as_utc(at), row_id, TestEvent(at=local(at), kind="send", step_id=step_id, action=action,
                                                     mode=mode, text=shown_text(payload)[:500])))
    t = TimelineEntry.__table__.c
    with deps.engine.connect() as conn:
        rows = conn.execute(select(t.at, t.kind, t.summary).where(t.customer_id == TEST_CUSTOMER, t.kind.in_(SHOWN))
                            .order_by(t.at, t.id)).all()
    for order, (at, kind, summary) in enumerate(rows):
        events.append((as_utc(at), 10_000 + order, TestEvent(at=local(at), kind=kind, text=summary[:500])))
    events.sort(key=lambda e: (e[0], e[1]))
    return TestRunOut(sop_id=spec.id, start=local(start), end=local(end), events=[e for _, _, e in events])
