"""The model off the write path: a turn's model calls are made before its write transaction, for several
customers at once, and the turn itself uses their results."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import httpx

from agent.prefetch import MemoBrain
from tests.agent.conftest import say
from tests.agent.llm_fakes import ByCall, HeldFor, build_shop, text, understanding


class WritesWhileAnswering(ByCall):
    """Answers like the model and, while "thinking", tries to write to the shop's database from outside."""

    def __init__(self, database: Path | None = None) -> None:
        super().__init__(understanding(intent="greeting"), text("您好呀～在的"))
        self.database = database
        self.locked: list[str] = []
        self.threads: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.threads.add(threading.current_thread().name)
        if self.database is not None:
            try:
                with sqlite3.connect(self.database, timeout=0.05) as db:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("CREATE TABLE IF NOT EXISTS probe (x)")
            except sqlite3.OperationalError as exc:
                self.locked.append(str(exc))
        return super().__call__(request)


def test_no_database_lock_is_held_while_the_model_answers(tmp_path: Path) -> None:
    endpoint = WritesWhileAnswering()
    runtime = build_shop(tmp_path / "home", endpoint)
    endpoint.database = Path(runtime.deps.engine.url.database or "")
    (reply,) = say(runtime, "在吗")
    assert reply == "您好呀～在的" and endpoint.requests == 2
    assert endpoint.locked == []


def test_the_turn_uses_the_prefetched_calls_instead_of_calling_again(tmp_path: Path) -> None:
    endpoint = WritesWhileAnswering()
    runtime = build_shop(tmp_path / "home", endpoint)
    say(runtime, "在吗")
    brain = runtime.conversation.brain
    assert isinstance(brain, MemoBrain) and brain.hits == 2 and endpoint.requests == 2


def test_turns_of_different_customers_are_prefetched_concurrently(tmp_path: Path) -> None:
    from datetime import timedelta

    from agent.inbound import submit

    endpoint = WritesWhileAnswering()
    runtime = build_shop(tmp_path / "home", endpoint)
    now = runtime.deps.clock.now()
    for cid in ("c_demo_wang", "c_demo_li"):
        submit(runtime.deps, key=f"m/{cid}", customer_id=cid, kind="message", payload={"text": "在吗"}, at=now)
    runtime.run_until(now + timedelta(seconds=5))
    assert endpoint.requests == 4 and any(name.startswith("prefetch") for name in endpoint.threads)


def _send(runtime, cid: str, message: str) -> None:
    from agent.inbound import submit

    submit(runtime.deps, key=f"m/{cid}/{message}", customer_id=cid, kind="message", payload={"text": message},
           at=runtime.deps.clock.now())


def _replied(runtime, cid: str) -> list[str]:
    from sqlalchemy import select

    from agent.tables import Message

    with runtime.deps.engine.connect() as conn:
        return list(conn.execute(select(Message.text).where(Message.customer_id == cid, Message.direction == "out"))
                    .scalars())


def _pass_until(runtime, done, limit: int = 2000) -> None:
    """Pump passes as the service makes them (never waiting for the model) until ``done()``."""
    import time

    for _ in range(limit):
        runtime.tick(deadline=time.monotonic() + 0.25)
        if done():
            return
        runtime.inbound.drafts.wait_any(0.05)
    raise AssertionError("condition not reached")


def test_a_pump_pass_answers_other_customers_while_one_model_call_is_still_out(tmp_path: Path) -> None:
    endpoint = HeldFor("慢慢想")
    runtime = build_shop(tmp_path / "home", endpoint)
    _send(runtime, "c_demo_wang", "慢慢想")
    _send(runtime, "c_demo_li", "在吗")
    _pass_until(runtime, lambda: _replied(runtime, "c_demo_li") and endpoint.waiting.is_set())
    assert _replied(runtime, "c_demo_wang") == []  # still drafting: nothing written for her yet, nothing lost
    endpoint.release.set()
    _pass_until(runtime, lambda: bool(_replied(runtime, "c_demo_wang")))


def test_a_customers_later_message_waits_behind_the_turn_being_drafted(tmp_path: Path) -> None:
    endpoint = HeldFor("慢慢想")
    runtime = build_shop(tmp_path / "home", endpoint)
    _send(runtime, "c_demo_wang", "慢慢想")
    runtime.deps.clock.advance(timedelta(seconds=10))
    _send(runtime, "c_demo_wang", "在吗")
    _pass_until(runtime, endpoint.waiting.is_set)
    runtime.tick(deadline=0)
    assert _replied(runtime, "c_demo_wang") == []
    endpoint.release.set()
    _pass_until(runtime, lambda: len(_replied(runtime, "c_demo_wang")) == 2)
    from sqlalchemy import select

    from agent.tables import Message

    with runtime.deps.engine.connect() as conn:
        inbound = list(conn.execute(select(Message.text).where(Message.customer_id == "c_demo_wang",
                                                               Message.direction == "in").order_by(Message.id))
                       .scalars())
    assert inbound == ["慢慢想", "在吗"]


def test_a_turn_whose_inputs_changed_while_drafted_is_drafted_again_not_called_under_the_lock(
        tmp_path: Path) -> None:
    endpoint = WritesWhileAnswering()
    runtime = build_shop(tmp_path / "home", endpoint)
    endpoint.database = Path(runtime.deps.engine.url.database or "")
    _send(runtime, "c_demo_wang", "在吗")
    drafts = runtime.inbound.drafts
    runtime.tick(deadline=0)  # submits the draft
    while drafts.pending():
        drafts.wait_any()
    with runtime.deps.engine.begin() as conn:  # meanwhile an operator tags her: the drafted inputs are stale
        from knowledge.tables import CustomerTag

        conn.execute(CustomerTag.__table__.insert().values(customer_id="c_demo_wang", tag="VIP", source="operator",
                                                           created_at=runtime.deps.clock.now()))
    runtime.run_until(runtime.deps.clock.now() + timedelta(seconds=5))
    assert _replied(runtime, "c_demo_wang") == ["您好呀～在的"]
    assert endpoint.requests == 4 and endpoint.locked == []  # drafted twice; never while a write was open


def test_turns_still_drafting_when_the_circuit_opens_are_answered_offline_at_once(tmp_path: Path) -> None:
    endpoint = HeldFor("慢慢想")
    runtime = build_shop(tmp_path / "home", endpoint)
    _send(runtime, "c_demo_wang", "慢慢想")
    _pass_until(runtime, endpoint.waiting.is_set)
    breaker = runtime.conversation.breaker
    for _ in range(breaker.threshold):
        breaker.record_failure("endpoint down")
    _pass_until(runtime, lambda: bool(_replied(runtime, "c_demo_wang")))
    assert not endpoint.answered.is_set()  # answered while its call was still out
    endpoint.release.set()


def test_a_model_turn_records_the_calls_and_tokens_it_spent(tmp_path: Path) -> None:
    from sqlalchemy import select

    from agent.tables import Message

    runtime = build_shop(tmp_path / "home", WritesWhileAnswering())
    say(runtime, "在吗")
    with runtime.deps.engine.connect() as conn:
        (meta,) = conn.execute(select(Message.meta).where(Message.direction == "out")).scalars()
    assert (meta["llm_calls"], meta["llm_tokens"]) == (2, 4)  # the fake endpoint reports 2 tokens a call
