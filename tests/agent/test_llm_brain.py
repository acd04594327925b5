"""The LLM brain through a fake OpenAI-compatible endpoint (httpx MockTransport): calls, retries, fallbacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tenacity import wait_none

from agent.llm_brain import LLMBrain
from agent.runtime import Runtime
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag
from sop_graphs.tables import EmployeeTask
from tests.agent.conftest import say

Handler = Callable[[dict], httpx.Response]


def understanding(**fields) -> Handler:
    args = {"intent": "product_question", "products": [], "facts": [], "tags": [], "sentiment": "neutral",
            "needs_human": False, "is_question": True, **fields}

    def respond(body: dict) -> httpx.Response:
        name = body["tools"][0]["function"]["name"]
        return _completion({"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
    return respond


def text(content: str) -> Handler:
    return lambda body: _completion({"role": "assistant", "content": content})


def status(code: int) -> Handler:
    return lambda body: httpx.Response(code, json={"error": {"message": f"status {code}", "type": "x"}})


def timeout(body: dict) -> httpx.Response:
    raise httpx.ReadTimeout("fake endpoint timed out")


def malformed(body: dict) -> httpx.Response:
    name = body["tools"][0]["function"]["name"]
    return _completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": name, "arguments": "{not json"}}]})


def _completion(message: dict) -> httpx.Response:
    return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


class FakeEndpoint:
    """Serves scripted responses in order and records every request."""

    def __init__(self, *script: Handler) -> None:
        self.script = list(script)
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return self.script.pop(0)(body)


@pytest.fixture
def make_shop(tmp_path: Path) -> Callable[[FakeEndpoint], Runtime]:
    def build(endpoint: FakeEndpoint) -> Runtime:
        settings = Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0, brain="llm",
                            openai_base_url="http://fake-llm/v1", openai_api_key="sk-test", llm_max_attempts=3)
        brain = LLMBrain(settings, http_client=httpx.Client(transport=httpx.MockTransport(endpoint)), wait=wait_none())
        runtime = Runtime.build(settings, clock=SimClock(datetime(2026, 11, 23, 7, tzinfo=UTC)), brain=brain)
        runtime.load_demo_shop()
        with runtime.deps.engine.begin() as conn:
            for cid in ("c_demo_wang", "c_demo_li"):
                conn.execute(Customer.__table__.insert().values(id=cid, name="王女士", added_at=runtime.deps.clock.now(),
                                                                stage="active", attributes={}))
        return runtime
    return build


def _tasks(runtime: Runtime) -> list[str]:
    with runtime.deps.engine.connect() as conn:
        return list(conn.execute(select(EmployeeTask.title)).scalars())


def test_a_turn_costs_exactly_two_llm_calls(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(products=["玻尿酸面霜"]), text("这款面霜 ¥199，有货哦～"))
    replies = say(make_shop(endpoint), "玻尿酸面霜多少钱")
    assert replies == ["这款面霜 ¥199，有货哦～"] and len(endpoint.requests) == 2


def test_reply_call_is_grounded_in_the_looked_up_price(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(products=["玻尿酸面霜"]), text("¥199"))
    say(make_shop(endpoint), "玻尿酸面霜多少钱")
    assert "199" in endpoint.requests[1]["messages"][0]["content"]


def test_rate_limit_then_success_is_retried(make_shop) -> None:
    endpoint = FakeEndpoint(status(429), understanding(), status(503), text("好的～"))
    assert say(make_shop(endpoint), "你好呀") == ["好的～"]
    assert len(endpoint.requests) == 4


def test_persistent_timeouts_fall_back_to_offline_and_open_a_review_task(make_shop) -> None:
    endpoint = FakeEndpoint(timeout, timeout, timeout)
    runtime = make_shop(endpoint)
    (reply,) = say(runtime, "玻尿酸面霜多少钱")
    assert "¥199" in reply  # the offline brain answered
    assert any("模型服务不可用" in t for t in _tasks(runtime))


def test_malformed_structured_output_is_retried(make_shop) -> None:
    endpoint = FakeEndpoint(malformed, understanding(), text("您好～"))
    assert say(make_shop(endpoint), "在吗") == ["您好～"]


def test_model_tags_outside_the_taxonomy_are_dropped(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(intent="chitchat", tags=["VIP至尊", "关注新品"]), text("好的"))
    runtime = make_shop(endpoint)
    say(runtime, "最近有新品吗")
    with runtime.deps.engine.connect() as conn:
        tags = set(conn.execute(select(CustomerTag.tag)).scalars())
    assert "关注新品" in tags and "VIP至尊" not in tags


def test_model_named_order_of_another_customer_is_never_read(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(intent="order_status", order_no="DD20261100002"), text("您的订单在处理中"))
    runtime = make_shop(endpoint)
    with runtime.deps.engine.connect() as conn:
        owner = conn.exec_driver_sql("SELECT customer_id FROM shoporder WHERE order_no='DD20261100002'").scalar()
    assert owner != "c_demo_wang"
    say(runtime, "查一下这个订单")
    assert "DD20261100002" not in json.dumps(endpoint.requests[-1], ensure_ascii=False)


def test_reply_inventing_a_price_is_replaced_by_the_offline_answer(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(products=["玻尿酸面霜"]), text("今天特价 ¥9.9！"), text("¥9.9"),
                            text("¥9.9"))
    (reply,) = say(make_shop(endpoint), "玻尿酸面霜多少钱")
    assert "¥199" in reply and "9.9" not in reply
