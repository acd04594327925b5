"""The model off the write path: a turn's model calls are made before its write transaction, for several
customers at once, and the turn itself uses their results."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx

from agent.prefetch import MemoBrain
from tests.agent.conftest import say
from tests.agent.llm_fakes import ByCall, build_shop, text, understanding


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
