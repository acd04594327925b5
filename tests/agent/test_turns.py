"""Turn-taking: bursts merge into one turn, duplicates are ignored, digressions are answered and re-asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from agent.inbound import submit
from agent.runtime import Runtime
from agent.tables import Message
from knowledge.clock import SimClock
from knowledge.settings import Settings
from sop_graphs.tables import SopRun
from tests.agent.conftest import say


def _out(runtime: Runtime) -> list[str]:
    with runtime.deps.engine.connect() as conn:
        return list(conn.execute(select(Message.text).where(Message.direction == "out").order_by(Message.id)).scalars())


def test_a_burst_of_messages_is_answered_as_one_turn(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(home=tmp_path, embedder="hash", burst_window_seconds=3),
                            clock=SimClock(datetime(2026, 11, 23, 7, tzinfo=UTC)))
    runtime.load_demo_shop()
    submit(runtime.deps, key="add", customer_id="c1", kind="customer_added", payload={}, at=runtime.deps.clock.now())
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=4))  # questionnaire timed out
    before = len(_out(runtime))
    start = runtime.deps.clock.now()
    for i, part in enumerate(("在吗", "玻尿酸面霜", "多少钱？")):
        submit(runtime.deps, key=f"b{i}", customer_id="c1", kind="message", payload={"text": part},
               at=start + timedelta(seconds=i))
    runtime.run_until(start + timedelta(seconds=10))
    replies = _out(runtime)[before:]
    assert len(replies) == 1 and "¥199" in replies[0]


def test_burst_waits_until_the_window_is_quiet(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(home=tmp_path, embedder="hash", burst_window_seconds=3),
                            clock=SimClock(datetime(2026, 11, 23, 7, tzinfo=UTC)))
    submit(runtime.deps, key="add", customer_id="c1", kind="customer_added", payload={}, at=runtime.deps.clock.now())
    runtime.tick()
    submit(runtime.deps, key="m1", customer_id="c1", kind="message", payload={"text": "你好"},
           at=runtime.deps.clock.now())
    runtime.tick()
    with runtime.deps.engine.connect() as conn:
        assert conn.execute(select(Message.id).where(Message.direction == "in")).first() is None


def test_digression_inside_the_questionnaire_is_answered_then_reasked(shop: Runtime) -> None:
    submit(shop.deps, key="add", customer_id="c9", kind="customer_added", payload={"name": "小周"},
           at=shop.deps.clock.now())
    shop.run_until(shop.deps.clock.now() + timedelta(minutes=1))
    replies = say(shop, "先问下，面霜多少钱？", cid="c9")
    assert len(replies) == 2 and "¥" in replies[0] and "肤质" in replies[1]
    with shop.deps.engine.connect() as conn:
        waiting = conn.execute(select(SopRun.waiting).where(SopRun.customer_id == "c9",
                                                            SopRun.sop_id == "new_customer_nurture")).scalar()
    assert waiting.endswith("q_skin:1") or "q_skin" in waiting


def test_answer_after_a_digression_still_completes_the_question(shop: Runtime) -> None:
    submit(shop.deps, key="add", customer_id="c9", kind="customer_added", payload={"name": "小周"},
           at=shop.deps.clock.now())
    shop.run_until(shop.deps.clock.now() + timedelta(minutes=1))
    say(shop, "先问下，面霜多少钱？", cid="c9")
    say(shop, "油皮", cid="c9")
    with shop.deps.engine.connect() as conn:
        waiting = conn.execute(select(SopRun.waiting).where(SopRun.customer_id == "c9",
                                                            SopRun.sop_id == "new_customer_nurture")).scalar()
    assert "q_concern" in waiting
