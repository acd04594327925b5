"""Web chat over HTTP on the sandbox pipeline: replies, session scoping, streaming, health and metrics."""

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
    with TestClient(create_app(service, run_pump=True)) as client:  # lifespan starts the pump
        yield client


def test_chat_answers_a_product_question_in_chinese(chat):
    body = chat.post("/chat", json={"text": "玻尿酸水润保湿面霜多少钱", "name": "小林"}).json()
    assert any("¥199" in r["text"] for r in body["replies"])
    assert body["customer_id"].startswith("web_") and body["session"]


def test_session_keeps_the_same_customer(chat):
    first = chat.post("/chat", json={"text": "你好"}).json()
    second = chat.post("/chat", json={"text": "谢谢", "session": first["session"]}).json()
    assert second["customer_id"] == first["customer_id"]


def test_forged_session_cannot_speak_as_another_customer(chat):
    response = chat.post("/chat", json={"text": "我的订单到哪了", "session": "wm_victim.0123456789abcdef"})
    assert response.status_code == 401


def test_stream_sends_deltas_then_done(chat):
    with chat.stream("POST", "/chat/stream", json={"text": "玻尿酸水润保湿面霜多少钱"}) as response:
        text = "".join(response.iter_text())
    assert text.startswith("event: session") and "event: delta" in text and text.rstrip().endswith("}")
    assert "event: done" in text


def test_empty_message_is_refused(chat):
    assert chat.post("/chat", json={"text": ""}).status_code == 422


def test_health_readiness_and_metrics(chat):
    chat.post("/chat", json={"text": "你好"})
    assert chat.get("/healthz").json() == {"status": "ok"}
    assert chat.get("/readyz").json()["channel"] == "sandbox"
    metrics = chat.get("/metrics").text
    assert "sopagent_turns_total" in metrics and 'sopagent_sends_total{mode="kf"}' in metrics



def test_a_turn_is_not_settled_while_what_it_scheduled_waits_for_a_pump_pass(tmp_path):
    from api.routes.chat import ChatIn, _accept, _settled
    from sop_graphs.tables import Outbox

    service = Service.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0),
                            clock=SimClock(NOW))
    service.runtime.load_demo_shop()
    _accept(service, "web_slowpass", ChatIn(text="玻尿酸水润保湿面霜多少钱"), new=True)
    service.runtime.inbound.process()  # the messages handled; the SOP's sends they scheduled not yet dispatched
    assert not _settled(service, "web_slowpass")
    service.pump_once()
    assert _settled(service, "web_slowpass")
    with service.runtime.deps.engine.connect() as conn:
        rows = conn.execute(Outbox.__table__.select().where(Outbox.__table__.c.customer_id == "web_slowpass")).all()
    assert any(r.action == "ask" and r.status == "sent" for r in rows)
