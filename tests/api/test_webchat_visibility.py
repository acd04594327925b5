"""What a web chat customer sees: customer-facing messages only, never an employee's task."""

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Service
from knowledge.clock import SimClock
from knowledge.settings import Settings
from tests.api.conftest import NOW


@pytest.fixture
def chat(tmp_path):
    service = Service.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0,
                                     chat_wait_seconds=10), clock=SimClock(NOW))
    service.runtime.load_demo_shop()
    with TestClient(create_app(service, run_pump=True)) as client:
        yield client


def test_handoff_task_text_is_never_shown_to_the_web_customer(chat):
    body = chat.post("/chat", json={"text": "转人工"}).json()
    assert body["replies"] and all(r["action"] in ("message", "ask", "group_invite", "coupon")
                                   for r in body["replies"])
    assert not any("客户要求人工服务" in r["text"] for r in body["replies"])


def test_a_retried_message_id_returns_the_same_replies(chat):
    first = chat.post("/chat", json={"text": "玻尿酸水润保湿面霜多少钱", "message_id": "m-1"}).json()
    retry = chat.post("/chat", json={"text": "玻尿酸水润保湿面霜多少钱", "message_id": "m-1",
                                     "session": first["session"]}).json()
    assert first["replies"] and [r["text"] for r in retry["replies"]] == [r["text"] for r in first["replies"]]


def test_a_retry_after_a_later_message_does_not_return_the_later_replies(chat):
    first = chat.post("/chat", json={"text": "玻尿酸水润保湿面霜多少钱", "message_id": "m-1"}).json()
    chat.post("/chat", json={"text": "发票怎么开", "message_id": "m-2", "session": first["session"]})
    retry = chat.post("/chat", json={"text": "玻尿酸水润保湿面霜多少钱", "message_id": "m-1",
                                     "session": first["session"]}).json()
    assert [r["text"] for r in retry["replies"]] == [r["text"] for r in first["replies"]]
