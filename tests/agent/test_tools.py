"""Customer-bound lookups: ids however written, own tracking numbers, several parcels, products not carried."""

from __future__ import annotations

from agent.runtime import Runtime
from tests.agent.conftest import say


def _customer(shop: Runtime, cid: str) -> None:
    from knowledge.tables import Customer

    with shop.deps.engine.begin() as conn:
        conn.execute(Customer.__table__.insert().values(id=cid, name="周先生", added_at=shop.deps.clock.now(),
                                                        stage="customer", attributes={}))


def test_order_number_in_lower_case_with_spaces_finds_the_order(shop: Runtime) -> None:
    _customer(shop, "c_demo_zhou")
    (reply,) = say(shop, "dd2026 1100 050 到哪了", cid="c_demo_zhou")
    assert "DD20261100050" in reply and "不在您的账户" not in reply


def test_own_tracking_number_finds_the_order(shop: Runtime) -> None:
    _customer(shop, "c_demo_zhou")
    (reply,) = say(shop, "ZT889566556447 这个快递到哪了", cid="c_demo_zhou")
    assert "DD20261100050" in reply


def test_someone_elses_order_number_is_refused(shop: Runtime) -> None:
    (reply,) = say(shop, "DD20261100050 到哪了")
    assert "不在您的账户" in reply and "ZT889566556447" not in reply


def test_phone_number_is_not_read_as_an_order_number(shop: Runtime) -> None:
    (reply,) = say(shop, "我手机号13812345678 帮我查下订单")
    assert "不在您的账户" not in reply


def test_product_the_shop_does_not_sell_gets_no_price(shop: Runtime) -> None:
    (reply,) = say(shop, "美白牙膏多少钱")
    assert "¥" not in reply and "没有" in reply


def test_pregnant_customer_is_never_recommended_a_contraindicated_product(shop: Runtime) -> None:
    (reply,) = say(shop, "我怀孕了 想要抗老的 推荐一下")
    assert "视黄醇" not in reply.split("（已避开")[0]


def test_expired_promotion_is_not_offered(shop: Runtime) -> None:
    shop.deps.clock.set(shop.deps.clock.now().replace(month=12, day=10))
    (reply,) = say(shop, "最近有什么活动吗")
    assert "双十一返场" not in reply and "周五直播间" in reply


def test_faq_answers_an_invoice_question(shop: Runtime) -> None:
    (reply,) = say(shop, "能开发票吗 公司报销要用")
    assert "电子发票" in reply


def test_product_named_that_no_order_holds_is_said_so_not_reported_as_another_order(shop: Runtime) -> None:
    _customer(shop, "c_demo_zhou")
    (reply,) = say(shop, "我买的口红怎么还没到", cid="c_demo_zhou")
    assert reply.startswith("没有查到包含「口红」的订单")
