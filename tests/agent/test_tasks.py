"""Employee tasks as people work them: a completion is recorded once and wakes the customer's waiting runs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from agent.runtime import Runtime
from agent.tables import InboundEvent
from agent.tasks import announce_done, mark_done
from sop_graphs.customers import BROADCAST
from sop_graphs.tables import EmployeeTask


def _task(shop: Runtime, customer_id: str) -> int:
    now = shop.deps.clock.now()
    with shop.deps.engine.begin() as conn:
        return int(conn.execute(EmployeeTask.__table__.insert().values(
            key=f"t/{customer_id}", customer_id=customer_id, assignee="advisor", kind="send_group", title="群发",
            content={}, due_at=now + timedelta(hours=1), created_at=now)).inserted_primary_key[0])


def _events(shop: Runtime) -> list[str]:
    with shop.deps.engine.connect() as conn:
        return list(conn.execute(select(InboundEvent.customer_id).where(InboundEvent.kind == "task_completed"))
                    .scalars())


def test_completing_a_task_keeps_its_first_completion_time(shop: Runtime) -> None:
    task_id = _task(shop, "c_demo_wang")
    first = shop.deps.clock.now()
    with shop.deps.engine.begin() as conn:
        mark_done(conn, task_id, first)
        task = mark_done(conn, task_id, first + timedelta(hours=1))
    assert task is not None and task["status"] == "done"
    assert task["done_at"].replace(tzinfo=None) == first.replace(tzinfo=None)


def test_a_completed_customer_task_is_an_event_for_that_customer(shop: Runtime) -> None:
    task_id = _task(shop, "c_demo_wang")
    with shop.deps.engine.begin() as conn:
        task = mark_done(conn, task_id, shop.deps.clock.now())
    announce_done(shop.deps, task or {})
    assert _events(shop) == ["c_demo_wang"]


def test_a_completed_group_task_is_no_customers_event(shop: Runtime) -> None:
    task_id = _task(shop, BROADCAST)
    with shop.deps.engine.begin() as conn:
        task = mark_done(conn, task_id, shop.deps.clock.now())
    announce_done(shop.deps, task or {})
    assert _events(shop) == []
