"""The service on PostgreSQL: web chat, the pump and the operator API work on the production store."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Service
from knowledge.clock import SimClock
from knowledge.settings import Settings
from tests.api.conftest import NOW

TOKEN = "pg-operator"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def test_the_service_serves_customers_and_operators_on_postgresql(postgres_database, tmp_path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=postgres_database(), embedder="hash", channel="sandbox",
                        operator_token=TOKEN, burst_window_seconds=0, chat_wait_seconds=0.001)
    service = Service.build(settings, clock=SimClock(NOW))
    try:
        service.runtime.load_demo_shop()
        client = TestClient(create_app(service, run_pump=False))
        session = client.post("/chat", json={"text": "你们发什么快递"}).json()["session"]
        service.pump_once()
        customers = client.get("/api/customers", headers=HEADERS)
        assert customers.headers["X-Total-Count"] == "1"
        cid = customers.json()[0]["id"]
        assert client.post(f"/api/conversations/{cid}/takeover", headers=HEADERS, json={}).status_code == 200
        assert client.post(f"/api/conversations/{cid}/reply", headers=HEADERS, json={"text": "我来帮您"}).status_code == 202
        messages = client.get(f"/api/conversations/{cid}/messages", headers=HEADERS).json()
        assert [m["direction"] for m in messages][:2] == ["in", "out"] and messages[-1]["human"] == "operator"
        source = client.get("/api/sops/new_customer_nurture/source", headers=HEADERS).json()["yaml"]
        version = client.put("/api/sops/new_customer_nurture", headers=HEADERS, json={"yaml": source}).json()["version"]
        published = client.post("/api/sops/new_customer_nurture/publish", headers=HEADERS, json={"version": version})
        assert published.json()["published_version"] == version
        assert client.post("/chat", json={"text": "在吗", "session": session}).status_code == 200
    finally:
        service.stop()
