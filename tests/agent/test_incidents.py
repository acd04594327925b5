"""Incidents: apology, the right advice, a task that backs the promise, the complaint SOP, no marketing on top."""

from __future__ import annotations

from sqlalchemy import select

from agent.runtime import Runtime
from knowledge.tables import Customer
from sop_graphs.tables import EmployeeTask, SopRun
from tests.agent.conftest import say


def _tasks(shop: Runtime, cid: str = "c_demo_wang") -> list[str]:
    with shop.deps.engine.connect() as conn:
        return list(conn.execute(select(EmployeeTask.title).where(EmployeeTask.customer_id == cid)).scalars())


def _runs(shop: Runtime, cid: str = "c_demo_wang") -> set[str]:
    with shop.deps.engine.connect() as conn:
        return set(conn.execute(select(SopRun.sop_id).where(SopRun.customer_id == cid)).scalars())


def test_adverse_reaction_gets_stop_use_advice_and_an_urgent_handoff(shop: Runtime) -> None:
    replies = say(shop, "用了你们的精华脸又红又痒 起了好多小疹子")
    with shop.deps.engine.connect() as conn:
        paused = conn.execute(select(Customer.bot_paused).where(Customer.id == "c_demo_wang")).scalar()
    assert "停止使用" in replies[0] and any("加急" in t for t in _tasks(shop)) and paused


def test_damaged_parcel_gets_an_apology_a_task_and_the_complaint_flow(shop: Runtime) -> None:
    replies = say(shop, "快递到了 瓶子碎了 漏了一盒子")
    assert "抱歉" in replies[0] and "照片" in replies[0]
    assert any("破损" in t for t in _tasks(shop)) and "complaint_handling" in _runs(shop)


def test_spoiled_product_is_an_incident_not_a_product_question(shop: Runtime) -> None:
    replies = say(shop, "面霜打开一股怪味 是不是坏了")
    assert "¥" not in replies[0] and "complaint_handling" in _runs(shop)


def test_no_marketing_sop_starts_on_top_of_an_open_incident(shop: Runtime) -> None:
    say(shop, "收到的是假货吧 包装都不一样")
    say(shop, "你们的玻尿酸面霜多少钱")
    assert "product_interest_followup" not in _runs(shop)


def test_shipment_exception_reply_creates_the_follow_up_it_promises(shop: Runtime) -> None:
    from knowledge.tables import Customer as C

    with shop.deps.engine.begin() as conn:
        conn.execute(C.__table__.insert().values(id="c_shop_002", name="吴先生", added_at=shop.deps.clock.now(),
                                                 stage="customer", attributes={}))
    (reply,) = say(shop, "DD20261100007 怎么还没到", cid="c_shop_002")
    assert "跟进" in reply and any("异常" in t for t in _tasks(shop, "c_shop_002"))
