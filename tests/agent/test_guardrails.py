"""Guardrails on the LLM brain: amounts are values the facts hold, no promised coupons, tags or refunds,
a length cap; the model sets only customer-attribute tags and well-typed facts in range."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent.breaker import CircuitState
from agent.guardrails import check_reply, fact_numbers, model_facts, model_settable_tags, money_amounts
from agent.runtime import Runtime, load_valid_library
from agent.understanding import Fact
from knowledge.settings import Settings
from knowledge.tables import CustomerTag
from sop_graphs.facts import current_facts
from sop_graphs.spec import Catalog
from tests.agent.conftest import say
from tests.agent.llm_fakes import FakeEndpoint, build_shop, tasks, text, understanding

CREAM = {"products": [{"name": "玻尿酸水润保湿面霜 50g", "sku": "SKU-CR01", "price": 199.0, "stock": 320}]}
SHIPPED = {"order": {"order_no": "DD20261100059", "status": "shipped", "status_label": "已发货", "amount": 328},
           "shipment": {"tracking_no": "SF1234590059", "carrier": "顺丰速运", "latest": "到达北京转运中心"}}
PROMOTION = {"promotions": [{"title": "双十一返场满减", "description": "全场满 299 减 40，满 499 减 80"},
                            {"title": "周五直播间专享券", "description": "直播间领取满 199 减 30 券"}]}


def kinds(reply: str, facts: dict[str, Any], max_chars: int = 1000) -> set[str]:
    return {v.kind for v in check_reply(reply, facts, max_chars=max_chars)}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_valid_library(Settings().library_path).catalog


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize("written", ["¥59", "￥59", "59元", "59块", "59块钱", "RMB 59", "rmb59", "人民币59元", "五十九元",
                                     "五十九块", "59.00", "￥５９", "59.0元"])
def test_an_amount_in_any_notation_is_read_as_its_value(written: str) -> None:
    assert [value for _, value in money_amounts(f"这款只要{written}哦")] == [59.0]


@pytest.mark.parametrize("written", ["¥59", "59元", "59块", "RMB 59", "五十九元", "59.00"])
def test_an_amount_the_facts_do_not_hold_is_refused_in_any_notation(written: str) -> None:
    assert kinds(f"这款面霜今天只要{written}！", CREAM) == {"amount"}
    assert kinds(f"这款面霜今天只要{written}！", {"products": [{"name": "面霜", "price": 59}]}) == set()


@pytest.mark.parametrize("written", ["¥199", "199元", "一百九十九元", "199.00", "RMB199"])
def test_the_looked_up_price_may_be_quoted_in_any_notation(written: str) -> None:
    assert kinds(f"这款面霜 {written}，有货哦～", CREAM) == set()


def test_a_number_inside_a_tracking_or_order_number_does_not_back_an_amount() -> None:
    assert "59" in str(SHIPPED) and 59.0 not in fact_numbers(SHIPPED)
    assert kinds("您的包裹已到北京，运费 ¥59", SHIPPED) == {"amount"}
    assert kinds("您的订单实付 ¥328，运单 SF1234590059 已到达北京转运中心", SHIPPED) == set()


def test_amounts_written_in_a_promotion_back_the_same_amounts_in_a_reply() -> None:
    assert {299.0, 40.0, 499.0, 80.0, 199.0, 30.0} <= fact_numbers(PROMOTION)
    assert kinds("现在全场满299减40，直播间还能领满199减30的券～", PROMOTION) == set()
    assert kinds("现在全场满299减50哦", PROMOTION) == {"amount"}


def test_quantities_sizes_and_ratings_are_not_amounts() -> None:
    assert money_amounts("50g 装，SPF50+，满2件打9折，7天无理由") == []


# ---------------------------------------------------------------- promises


@pytest.mark.parametrize(("reply", "kind"), [
    ("券码 FREE2026，下单时填写即可", "code"),
    ("您的优惠码是：VIP888", "code"),
    ("送你一张券，下单更划算～", "coupon"),
    ("我这边给您发一张优惠券", "coupon"),
    ("帮您申请一张无门槛券哈", "coupon"),
    ("已经给您打上 VIP 标签啦", "tag"),
    ("已帮您升级为VIP会员", "tag"),
    ("已经给您退款了，请留意到账", "refund"),
    ("马上为您办理退款", "refund"),
    ("退款已到账，请查收", "refund"),
])
def test_a_promise_only_the_rules_can_keep_is_refused(reply: str, kind: str) -> None:
    assert kind in kinds(reply, {**CREAM, **SHIPPED, **PROMOTION})


@pytest.mark.parametrize("reply", [
    "直播间可以领满199减30的券哦～",
    "给您推荐这款玻尿酸水润保湿面霜，¥199，有货",
    "如需退款，可以在订单页申请，退款会原路返回",
    "您的订单已发货，运单 SF1234590059",
])
def test_an_ordinary_answer_passes(reply: str) -> None:
    assert kinds(reply, {**CREAM, **SHIPPED, **PROMOTION}) == set()


def test_a_refund_is_stated_when_the_order_shows_one() -> None:
    refunded = {"order": {"order_no": "DD20261100007", "status": "refunded", "status_label": "已退款", "amount": 139}}
    assert kinds("您的订单已退款 ¥139，退款已到账请查收", refunded) == set()
    assert kinds("您的订单已退款", SHIPPED) == {"refund"}


def test_a_code_the_facts_hold_may_be_repeated() -> None:
    live = {"promotions": [{"title": "直播专享", "description": "直播间口令 LIVE2026 领券"}]}
    assert kinds("直播间口令 LIVE2026 哦", live) == set()
    assert kinds("直播间口令 LIVE2027 哦", live) == {"code"}


def test_a_reply_longer_than_the_cap_is_refused() -> None:
    assert kinds("好" * 121, CREAM, max_chars=120) == {"length"}
    assert kinds("好" * 120, CREAM, max_chars=120) == set()


# ---------------------------------------------------------------- what the model may set


def test_only_tags_of_model_settable_groups_may_be_set_by_the_model(catalog: Catalog) -> None:
    settable = model_settable_tags(catalog)
    assert {"干皮", "敏感肌", "补水保湿", "关注新品"} <= settable
    assert not settable & {"已购买", "投诉已解决", "投诉中", "老客推荐官", "预算500以上", "门店扫码"}


@pytest.mark.parametrize(("fact", "kept"), [
    (Fact(key="budget", value="300"), "300"),
    (Fact(key="budget", value="三百元"), "300"),
    (Fact(key="budget", value="9999999"), None),
    (Fact(key="budget", value="0"), None),
    (Fact(key="budget", value="很多"), None),
    (Fact(key="age", value="28"), "28"),
    (Fact(key="age", value="200"), None),
    (Fact(key="age", value="28.5"), None),
    (Fact(key="skin_type", value="油皮"), "油皮"),
    (Fact(key="skin_type", value="油性皮肤"), "油皮"),
    (Fact(key="skin_type", value="外星皮"), None),
    (Fact(key="vip_level", value="钻石"), None),
])
def test_model_facts_are_checked_for_type_and_range(catalog: Catalog, fact: Fact, kept: str | None) -> None:
    found = model_facts([fact], catalog, budget=(1, 100_000))
    assert [f.value for f in found] == ([kept] if kept else [])


# ---------------------------------------------------------------- through a turn


@pytest.fixture
def make_shop(tmp_path: Path) -> Callable[[FakeEndpoint], Runtime]:
    return lambda endpoint: build_shop(tmp_path / "home", endpoint)


def _tags(runtime: Runtime) -> set[str]:
    with runtime.deps.engine.connect() as conn:
        return set(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == "c_demo_wang")).scalars())


@pytest.mark.parametrize("promise", ["券码 FREE2026，下单立减", "送你一张券～这款 ¥199", "已经给您打上 VIP 标签啦",
                                     "已经给您退款了", "这款面霜今天只要五十九元"])
def test_a_reply_making_a_promise_is_replaced_by_the_offline_answer(make_shop, promise: str) -> None:
    endpoint = FakeEndpoint(understanding(products=["玻尿酸面霜"]), text(promise))
    runtime = make_shop(endpoint)
    (reply,) = say(runtime, "玻尿酸面霜多少钱")
    assert reply != promise and "¥199" in reply and len(endpoint.requests) == 2  # refused, not retried
    assert any("模型回复未通过校验" in t for t in tasks(runtime))
    status = runtime.conversation.breaker.status()  # the endpoint is fine: not an outage
    assert status.state is CircuitState.CLOSED and status.consecutive_failures == 0


def test_the_model_cannot_set_operational_tags(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(intent="greeting", tags=["已购买", "投诉已解决", "老客推荐官", "干皮"]),
                            text("您好～"))
    runtime = make_shop(endpoint)
    say(runtime, "你好")
    tags = _tags(runtime)
    assert "干皮" in tags and not tags & {"已购买", "投诉已解决", "老客推荐官"}
    prompt = endpoint.requests[0]["messages"][0]["content"]
    assert "干皮" in prompt and "已购买" not in prompt.split("客户已有标签")[0]


def _budget_from_model(make_shop, value: str) -> tuple[str | None, set[str]]:
    """The budget stored (and the tags) after the model extracts ``value`` as the customer's budget."""
    endpoint = FakeEndpoint(understanding(intent="recommendation", facts=[{"key": "budget", "value": value}]),
                            text("好的，帮您看看～"))
    runtime = make_shop(endpoint)
    say(runtime, "推荐一款面霜")
    with runtime.deps.engine.connect() as conn:
        return current_facts(conn, "c_demo_wang").get("budget"), _tags(runtime)


def test_a_budget_out_of_range_from_the_model_is_not_stored(make_shop) -> None:
    budget, tags = _budget_from_model(make_shop, "9999999")
    assert budget is None and not tags & {"预算500以上"}


def test_a_budget_in_range_from_the_model_is_stored(make_shop) -> None:
    assert _budget_from_model(make_shop, "三百")[0] == "300"
