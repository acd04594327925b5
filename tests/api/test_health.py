"""Readiness and metrics report the LLM brain's circuit: ready (200) but degraded while the offline brain stands in."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from tenacity import wait_none

from agent.llm_brain import LLMBrain
from api.app import create_app
from api.service import Service
from knowledge.clock import SimClock
from knowledge.settings import Settings
from tests.api.conftest import NOW


class Endpoint:
    """A fake OpenAI-compatible endpoint that is down (503) until ``up``."""

    def __init__(self) -> None:
        self.up = False
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if not self.up:
            return httpx.Response(503, json={"error": {"message": "overloaded", "type": "x"}})
        if json.loads(request.content).get("tools"):
            name = json.loads(request.content)["tools"][0]["function"]["name"]
            arguments = json.dumps({"intent": "greeting", "products": [], "facts": [], "tags": []})
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}]}
        else:
            message = {"role": "assistant", "content": "您好，在的～"}
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                         "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


@pytest.fixture
def llm_service(tmp_path, endpoint: Endpoint) -> Service:
    settings = Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0, chat_wait_seconds=10,
                        brain="llm", openai_base_url="http://fake-llm/v1", openai_api_key="sk-test",
                        llm_breaker_failures=3, llm_breaker_cooldown_seconds=30)
    brain = LLMBrain(settings, http_client=httpx.Client(transport=httpx.MockTransport(endpoint)), wait=wait_none())
    service = Service.build(settings, clock=SimClock(NOW), brain=brain)
    service.runtime.load_demo_shop()
    return service


def _metric(text: str, name: str) -> float:
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[-1])


def test_readiness_reports_a_healthy_brain(llm_service: Service) -> None:
    with TestClient(create_app(llm_service, run_pump=False)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["brain"] == "ok" and body["brain_health"]["name"] == "llm"
    assert body["brain_health"]["circuit"] == "closed" and body["brain_health"]["consecutive_failures"] == 0


def test_an_open_circuit_is_reported_degraded_but_ready_and_in_metrics(llm_service: Service, endpoint: Endpoint) -> None:
    with TestClient(create_app(llm_service, run_pump=True)) as client:
        for message in ("你好", "在吗", "有人吗"):
            assert client.post("/chat", json={"text": message}).json()["replies"]  # the offline brain answers
        assert client.post("/chat", json={"text": "玻尿酸水润保湿面霜多少钱"}).json()["replies"]
        assert endpoint.requests == 9  # the fourth message never called the endpoint

        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready" and body["brain"] == "degraded"
        assert body["brain_health"]["circuit"] == "open" and body["brain_health"]["consecutive_failures"] == 3
        assert body["brain_health"]["last_error"] and "overloaded" not in body["brain_health"]["last_error"]

        metrics = client.get("/metrics").text
        assert _metric(metrics, 'sopagent_brain_circuit_state{state="open"}') == 1
        assert _metric(metrics, 'sopagent_brain_circuit_state{state="closed"}') == 0
        assert _metric(metrics, "sopagent_brain_consecutive_failures") == 3
        assert _metric(metrics, "sopagent_brain_circuit_opened_total") == 1
        assert _metric(metrics, "sopagent_brain_short_circuited_total") == 1


def test_readiness_recovers_after_a_successful_probe(llm_service: Service, endpoint: Endpoint) -> None:
    with TestClient(create_app(llm_service, run_pump=True)) as client:
        for message in ("你好", "在吗", "有人吗"):
            client.post("/chat", json={"text": message})
        endpoint.up = True
        llm_service.runtime.deps.clock.advance(timedelta(seconds=30))
        assert client.get("/readyz").json()["brain_health"]["circuit"] == "half_open"
        replies = client.post("/chat", json={"text": "你好呀"}).json()["replies"]
        assert "您好，在的～" in [r["text"] for r in replies]
        body = client.get("/readyz").json()
        assert body["brain"] == "ok" and body["brain_health"]["circuit"] == "closed"
        assert _metric(client.get("/metrics").text, 'sopagent_brain_circuit_state{state="closed"}') == 1


def test_the_offline_brain_is_always_ok(tmp_path) -> None:
    service = Service.build(Settings(home=tmp_path / "home", embedder="hash"), clock=SimClock(NOW))
    with TestClient(create_app(service, run_pump=False)) as client:
        body = client.get("/readyz").json()
    assert body["brain"] == "ok" and body["brain_health"] == {
        "name": "offline", "circuit": "closed", "consecutive_failures": 0, "opened_at": None, "last_error": None}
