"""有赞 push messages: verified (Event-Sign header or sign field), parsed from the documented format and applied
through the generic order-event path, so each event reaches a known buyer's SOPs once. The bodies are the
constructed samples in tests/api/data/youzan (see the README there)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent.inbound import submit
from agent.tables import InboundEvent
from api.app import create_app
from api.platforms.youzan import AddressInfo, TradeDetail, decode_msg, order_from_trade, parse_push
from api.service import Service
from knowledge.clock import SimClock
from knowledge.tables import Shipment, ShopOrder
from tests.api.conftest import NOW, wecom_settings

CLIENT_ID, SECRET = "6f8e1c2b9a7d4e3f50", "9b1c6d2e8f0a4b7c3d5e1f2a6b8c0d4e"
DATA = Path(__file__).parent / "data" / "youzan"
BUYER = "wmYz7aCQAAdLq2o8xV3kPn5TfRzH1jUw"  # the known buyer's outer_user_id in the samples
TID, TID2 = "E20261123091148045600001", "E20261123093015045600002"
URL = "/api/events/youzan"


@pytest.fixture
def shop(tmp_path, fake):
    settings = wecom_settings(tmp_path / "home", youzan_client_id=CLIENT_ID, youzan_client_secret=SECRET)
    service = Service.build(settings, clock=SimClock(NOW), wecom_transport=fake.transport())
    submit(service.runtime.deps, key="add-buyer", customer_id=BUYER, kind="customer_added", payload={"name": "林小姐"})
    service.pump_once()
    yield service, TestClient(create_app(service, run_pump=False))
    service.stop()


def _sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def _signed(body: dict[str, Any], **changes: Any) -> bytes:
    """``body`` with ``changes`` (a dict ``msg`` is URL-encoded) and its ``sign`` recomputed."""
    body = body | changes
    if not isinstance(body["msg"], str):
        body["msg"] = quote_plus(json.dumps(body["msg"], ensure_ascii=False))
    body["sign"] = hashlib.md5((CLIENT_ID + body["msg"] + SECRET).encode()).hexdigest()
    return json.dumps(body, ensure_ascii=False).encode()


def _post(client: TestClient, sample: str | bytes, headers: dict[str, str] | None = None):
    body = (DATA / f"{sample}.json").read_bytes() if isinstance(sample, str) else sample
    return client.post(URL, content=body, headers={"Content-Type": "application/json"} | (headers or {}))


def _queued(service: Service, customer: str = BUYER) -> list[str]:
    with service.runtime.deps.engine.connect() as conn:
        i = InboundEvent.__table__.c
        return sorted(p["event"] for p in conn.execute(select(i.payload).where(
            i.customer_id == customer, i.kind == "order")).scalars())


def _order(service: Service, tid: str = TID) -> dict[str, Any] | None:
    with service.runtime.deps.engine.connect() as conn:
        row = conn.execute(select(ShopOrder.__table__).where(ShopOrder.order_no == tid)).mappings().first()
    return dict(row) if row is not None else None


def _nothing_stored(service: Service) -> bool:
    with service.runtime.deps.engine.connect() as conn:
        orders = conn.execute(select(func.count()).select_from(ShopOrder)).scalar()
        events = conn.execute(select(func.count()).select_from(InboundEvent).where(
            InboundEvent.__table__.c.kind == "order")).scalar()
    return orders == 0 and events == 0


def test_a_paid_push_for_a_known_buyer_stores_the_order_and_queues_one_paid_event(shop):
    service, client = shop
    response = _post(client, "paid")
    assert response.status_code == 200
    assert response.json()["code"] == 0 and response.json()["msg"] == "success"
    assert response.json()["emitted"] == ["paid"] and _queued(service) == ["paid"]
    order = _order(service)
    assert (order["customer_id"], order["status"], order["amount"]) == (BUYER, "paid", 288.0)
    assert [i["sku"] for i in order["items"]] == ["SKU-BD01", "SKU-BB02"]


def test_a_redelivered_push_with_a_higher_send_count_queues_nothing(shop):
    service, client = shop
    _post(client, "paid")
    again = _post(client, "paid_redelivery")
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["emitted"] == []
    assert _queued(service) == ["paid"]


def test_a_shipped_push_after_paid_queues_shipped(shop):
    service, client = shop
    _post(client, "paid")
    response = _post(client, "partly_shipped")
    assert response.json()["emitted"] == ["shipped"] and _order(service)["status"] == "shipped"


def test_the_full_shipment_after_a_partial_one_adds_nothing(shop):
    service, client = shop
    for sample in ("paid", "partly_shipped"):
        _post(client, sample)
    assert _post(client, "shipped").json()["emitted"] == []
    assert _queued(service) == ["paid", "shipped"]


def test_a_push_that_skips_ahead_queues_the_implied_events_once(shop):
    service, client = shop
    _post(client, "paid")
    assert _post(client, "success").json()["emitted"] == ["shipped", "delivered"]
    assert _post(client, "shipped").json()["emitted"] == []  # the late shipped push moves nothing back
    assert _queued(service) == ["delivered", "paid", "shipped"] and _order(service)["status"] == "delivered"


def test_a_refund_queues_refunded(shop):
    service, client = shop
    _post(client, "paid")
    assert _post(client, "refund_success").json()["emitted"] == ["refunded"]
    assert _order(service)["status"] == "refunded"


def test_a_partial_refund_leaves_the_order_going(shop):
    service, client = shop
    _post(client, "paid")
    refund = _sample("refund_success")
    msg = json.loads(decode_msg(parse_push(json.dumps(refund).encode())))
    out = _post(client, _signed(refund, msg=msg | {"oids": "3261123091148001", "refunded_fee": "111.27"})).json()
    assert out["emitted"] == [] and "partial refund" in out["ignored"] and _order(service)["status"] == "paid"


def test_a_paid_order_that_closes_was_refunded(shop):
    _, client = shop
    _post(client, "paid")
    assert _post(client, "close_after_refund").json()["emitted"] == ["refunded"]


def test_closing_a_refunded_order_does_not_also_cancel_it(shop):
    service, client = shop
    for sample in ("paid", "refund_success"):
        _post(client, sample)
    assert _post(client, "close_after_refund").json()["emitted"] == []
    assert _queued(service) == ["paid", "refunded"]


def test_an_unknown_buyers_order_is_stored_but_no_event_is_queued(shop):
    service, client = shop
    out = _post(client, "paid_unknown_buyer").json()
    assert out["customer_known"] is False and out["emitted"] == []
    order = _order(service, TID2)
    assert order["status"] == "paid" and order["customer_id"] == "youzan:Mq3vRb6Y505932001188724736"
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(InboundEvent).where(
            InboundEvent.__table__.c.kind == "order")).scalar() == 0


def test_a_push_for_an_order_the_shop_imported_reaches_that_orders_customer(shop):
    service, client = shop
    with service.runtime.deps.engine.begin() as conn:
        conn.execute(ShopOrder.__table__.insert().values(order_no=TID2, customer_id=BUYER, status="pending_payment",
                                                         amount=139, items=[], address="", created_at=NOW))
    assert _post(client, "paid_unknown_buyer").json()["emitted"] == ["paid"]
    assert _order(service, TID2)["customer_id"] == BUYER


@pytest.mark.parametrize(("body", "headers", "reason"), [
    (_signed(_sample("paid"), client_id="someone-else"), {}, "client_id"),
    (json.dumps(_sample("paid") | {"sign": "0" * 32}).encode(), {}, "sign does not match"),
    (json.dumps({k: v for k, v in _sample("paid").items() if k != "sign"}).encode(), {}, "unsigned"),
    ((DATA / "paid.json").read_bytes(), {"Event-Sign": "0" * 32}, "Event-Sign"),
])
def test_a_badly_signed_push_is_refused_and_stores_nothing(shop, body, headers, reason):
    service, client = shop
    response = _post(client, body, headers)
    assert response.status_code == 401 and reason in response.json()["detail"]
    assert _nothing_stored(service)


def test_the_event_sign_header_over_the_raw_body_is_enough(shop):
    service, client = shop
    body = json.dumps({k: v for k, v in _sample("paid").items() if k != "sign"}, ensure_ascii=False).encode()
    sign = hashlib.md5(CLIENT_ID.encode() + body + SECRET.encode()).hexdigest()
    response = _post(client, body, {"Event-Sign": sign, "Event-Type": "trade_TradePaid", "Client-Id": CLIENT_ID})
    assert response.status_code == 200 and response.json()["emitted"] == ["paid"]


@pytest.mark.parametrize(("body", "content_type"), [
    (b"not json", "application/json"),
    (b"not json", "text/plain"),
    (b"{}", "application/json"),
    (_signed(_sample("paid"), msg="%7Bnot-json"), "application/json"),
    (_signed(_sample("paid"), msg="%FF%FE"), "application/json"),  # not UTF-8 once decoded
    (_signed(_sample("paid"), msg={"order_promotion": {}}), "application/json"),  # no full_order_info
])
def test_a_malformed_push_is_a_clear_4xx(shop, body, content_type):
    service, client = shop
    response = client.post(URL, content=body, headers={"Content-Type": content_type})
    assert response.status_code in (400, 422) and response.json()["detail"]
    assert _nothing_stored(service)


def test_an_unmapped_type_is_acknowledged_and_stores_nothing(shop):
    service, client = shop
    response = _post(client, "memo_modified")
    assert response.status_code == 200 and response.json()["code"] == 0
    assert "trade_TradeMemoModified" in response.json()["ignored"] and _nothing_stored(service)


def test_a_test_message_is_acknowledged_and_ignored(shop):
    service, client = shop
    response = _post(client, "test_message")
    assert response.status_code == 200 and response.json()["code"] == 0 and response.json()["ignored"]
    assert _nothing_stored(service)


def test_without_credentials_the_endpoint_is_off(client):
    response = client.post(URL, content=(DATA / "paid.json").read_bytes(), headers={"Content-Type": "application/json"})
    assert response.status_code == 404 and "SOPAGENT_YOUZAN_CLIENT_ID" in response.json()["detail"]


def test_a_status_push_before_its_paid_push_is_refused_until_redelivered(shop):
    service, client = shop
    early = _post(client, "shipped")
    assert early.status_code == 409 and _nothing_stored(service)
    _post(client, "paid")
    assert _post(client, "shipped").json()["emitted"] == ["shipped"]  # 有赞's redelivery of the same message


def test_closing_an_order_never_seen_paid_is_acknowledged(shop):
    service, client = shop
    response = _post(client, "close_unpaid")
    assert response.status_code == 200 and response.json()["ignored"] and _nothing_stored(service)


def test_a_trade_that_carries_a_parcel_writes_the_shipment(shop):
    service, client = shop
    sample = _sample("paid")
    trade = json.loads(decode_msg(parse_push(json.dumps(sample).encode())))
    trade["delivery_order"] = [{"express_state": 1, "express_type": 0, "oids": [{"oid": "3261123091148001"}],
                                "dists": [{"dist_id": "8801", "express_info": {"express_id": 7,
                                                                                 "express_no": "SF1402938475612"}}]}]
    assert _post(client, _signed(sample, msg=trade)).status_code == 200
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(Shipment.tracking_no).where(Shipment.order_no == TID)).scalar() == "SF1402938475612"


def test_the_trade_maps_onto_our_order_in_utc_without_ciphertext():
    detail = TradeDetail.model_validate_json(decode_msg(parse_push((DATA / "paid.json").read_bytes())))
    order = order_from_trade(detail, BUYER)
    assert order.amount == 288.0 and order.created_at == datetime(2026, 11, 23, 1, 11, 48, tzinfo=UTC)
    assert order.items[1] == {"sku": "SKU-BB02", "name": "孕妇可用保湿霜 50g", "qty": 1, "price": 189.0}
    assert order.address == "浙江省杭州市西湖区"  # name, phone and street arrive encrypted: left out


def test_a_plaintext_address_keeps_the_receiver_and_masks_the_phone():
    address = AddressInfo(receiver_name="王女士", receiver_tel="13812345678", delivery_province="浙江省",
                          delivery_city="杭州市", delivery_district="西湖区", delivery_address="文三路478号")
    assert address.as_text() == "浙江省杭州市西湖区文三路478号 王女士 138****5678"


def test_an_oversized_body_is_refused_before_it_is_read(shop):
    service, client = shop
    big = _signed(_sample("paid"), kdt_name="店" * 600_000)
    assert _post(client, big).status_code == 413 and _nothing_stored(service)
