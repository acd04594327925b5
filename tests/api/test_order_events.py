"""Order events from the shop: signed, idempotent by event id, stored in the order tables, and each event an
order's status implies reaches the customer's SOPs once — from the webhook, an import, or both."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent.inbound import submit
from agent.tables import InboundEvent
from api.app import create_app
from api.order_events import emit_for_import, sign
from api.service import Service
from knowledge.clock import SimClock
from knowledge.importer import StatusChange
from knowledge.tables import Customer, Shipment, ShopOrder
from tests.api.conftest import NOW, wecom_settings

SECRET = "shop-webhook-secret"


@pytest.fixture
def shop(tmp_path, fake):
    service = Service.build(wecom_settings(tmp_path / "home", order_webhook_secret=SECRET), clock=SimClock(NOW),
                            wecom_transport=fake.transport())
    submit(service.runtime.deps, key="add-b1", customer_id="b1", kind="customer_added", payload={"name": "小林"})
    service.pump_once()
    yield service, TestClient(create_app(service, run_pump=False))
    service.stop()


def _event(event_id: str, kind: str, *, order_no: str = "O1", customer: str = "b1", **extra) -> dict:
    return {"event_id": event_id, "type": kind, "at": NOW.isoformat(), "order": {
        "order_no": order_no, "customer_id": customer, "amount": 129, "created_at": NOW.isoformat()}, **extra}


def _post(client, body: dict, *, secret: str = SECRET, at=NOW):
    raw = json.dumps(body).encode()
    ts = str(int(at.timestamp()))
    return client.post("/api/events/orders", content=raw, headers={
        "Content-Type": "application/json", "X-Sopagent-Timestamp": ts, "X-Sopagent-Signature": sign(secret, ts, raw)})


def _queued(service, customer="b1") -> list[str]:
    with service.runtime.deps.engine.connect() as conn:
        i = InboundEvent.__table__.c
        return sorted(p["event"] for p in conn.execute(select(i.payload).where(
            i.customer_id == customer, i.kind == "order")).scalars())


def test_a_paid_event_stores_the_order_and_makes_the_customer_a_customer(shop):
    service, client = shop
    response = _post(client, _event("e1", "paid"))
    assert response.status_code == 200 and response.json()["emitted"] == ["paid"]
    service.pump_once()
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(ShopOrder.status).where(ShopOrder.order_no == "O1")).scalar() == "paid"
        stage, orders = conn.execute(select(Customer.stage, Customer.orders_count).where(Customer.id == "b1")).one()
    assert (stage, orders) == ("customer", 1)


def test_a_redelivered_event_is_recognised_and_changes_nothing(shop):
    service, client = shop
    _post(client, _event("e1", "paid"))
    again = _post(client, _event("e1", "paid")).json()
    assert again["duplicate"] is True and again["emitted"] == []
    assert _queued(service) == ["paid"]


def test_the_same_fact_under_another_event_id_is_not_counted_twice(shop):
    service, client = shop
    _post(client, _event("e1", "paid"))
    assert _post(client, _event("e2", "paid")).json()["emitted"] == []
    service.pump_once()
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(Customer.orders_count).where(Customer.id == "b1")).scalar() == 1


def test_a_late_paid_event_does_not_move_a_shipped_order_back(shop):
    service, client = shop
    shipment = {"tracking_no": "SF100", "carrier": "顺丰", "status": "in_transit"}
    assert _post(client, _event("e2", "shipped", shipment=shipment)).json()["emitted"] == ["paid", "shipped"]
    late = _post(client, _event("e1", "paid")).json()
    assert late["order_status"] == "shipped" and late["emitted"] == []
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(Shipment.carrier).where(Shipment.order_no == "O1")).scalar() == "顺丰"


def test_an_order_for_an_unknown_customer_is_stored_but_no_event_is_queued(shop):
    service, client = shop
    out = _post(client, _event("e9", "paid", customer="stranger")).json()
    assert out["customer_known"] is False and _queued(service, "stranger") == []
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ShopOrder)).scalar() == 1


@pytest.mark.parametrize(("secret", "shift", "reason"), [
    ("wrong-secret", timedelta(0), "signature"),
    (SECRET, timedelta(minutes=10), "from now"),
])
def test_a_badly_signed_or_stale_delivery_is_refused(shop, secret, shift, reason):
    service, client = shop
    response = _post(client, _event("e1", "paid"), secret=secret, at=NOW - shift)
    assert response.status_code == 401 and reason in response.json()["detail"]
    assert _queued(service) == []


def test_an_unsigned_or_malformed_delivery_is_a_clear_4xx(shop):
    _, client = shop
    assert client.post("/api/events/orders", json=_event("e1", "paid")).status_code == 401
    assert _post(client, {"event_id": "x", "type": "teleported"}).status_code == 422


def test_without_a_secret_the_webhook_is_off(client):
    response = client.post("/api/events/orders", json={})
    assert response.status_code == 404 and "SOPAGENT_ORDER_WEBHOOK_SECRET" in response.json()["detail"]


def test_an_import_after_the_webhook_adds_no_second_event(shop):
    service, client = shop
    _post(client, _event("e1", "paid"))
    change = StatusChange(order_no="O1", customer_id="b1", before=None, after="delivered", created_at=NOW)
    assert emit_for_import(service.runtime.deps.engine, [change], now=NOW) == 2  # shipped and delivered only
    assert _queued(service) == ["delivered", "paid", "shipped"]


def test_an_import_of_old_orders_is_history_not_news(shop):
    service, _ = shop
    old = StatusChange(order_no="O7", customer_id="b1", before=None, after="delivered",
                       created_at=NOW - timedelta(days=90))
    assert emit_for_import(service.runtime.deps.engine, [old], now=NOW) == 0


def test_an_import_that_moves_an_order_on_emits_what_it_implies(shop):
    service, _ = shop
    moved = StatusChange(order_no="O8", customer_id="b1", before="paid", after="shipped",
                         created_at=NOW - timedelta(days=90))
    assert emit_for_import(service.runtime.deps.engine, [moved], now=NOW) == 1
    assert _queued(service) == ["shipped"]
