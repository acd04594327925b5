"""Agent fixtures: a runtime with the demo shop and known customers who are not in any SOP yet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from agent.inbound import submit
from agent.runtime import Runtime
from agent.tables import Message
from knowledge.tables import Customer


@pytest.fixture
def shop(runtime: Runtime) -> Runtime:
    runtime.load_demo_shop()
    with runtime.deps.engine.begin() as conn:
        for cid, name in (("c_demo_wang", "王女士"), ("c_demo_li", "李先生")):
            conn.execute(Customer.__table__.insert().values(id=cid, name=name, added_at=runtime.deps.clock.now(),
                                                            stage="active", attributes={}))
    return runtime


def say(runtime: Runtime, text: str, cid: str = "c_demo_wang", *, wait: timedelta = timedelta(seconds=5)) -> list[str]:
    """Send one customer message, let the runtime settle, return the bot's replies to it (in order)."""
    now = runtime.deps.clock.now()
    key = f"m/{cid}/{now.isoformat()}/{text}"
    submit(runtime.deps, key=key, customer_id=cid, kind="message", payload={"text": text}, at=now)
    runtime.run_until(now + wait)
    with runtime.deps.engine.connect() as conn:
        rows = conn.execute(select(Message.text).where(Message.customer_id == cid, Message.direction == "out",
                                                       Message.key.like(f"out/{key}%")).order_by(Message.id))
        return list(rows.scalars())
