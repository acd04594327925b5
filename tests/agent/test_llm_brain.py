"""The LLM brain through a fake OpenAI-compatible endpoint (httpx MockTransport): calls, retries, fallbacks.

Every bad response shape ends the same way: the retry policy (or none, for a client error), then
BrainUnavailable, then the offline brain answers the turn and a review task opens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import httpx
import openai
import pytest
from langchain_core.exceptions import OutputParserException
from pydantic import ValidationError
from sqlalchemy import select
from tenacity import wait_none

from agent.brain import BrainUnavailable
from agent.llm_brain import LLMBrain, MalformedOutput
from agent.runtime import Runtime
from agent.understanding import Facts, TurnInput, Understanding
from knowledge.tables import CustomerTag
from sop_graphs.spec import Catalog
from tests.agent.conftest import say
from tests.agent.llm_fakes import (
    ByCall,
    FakeEndpoint,
    Handler,
    build_shop,
    completion,
    llm_settings,
    malformed,
    status,
    tasks,
    text,
    timeout,
    tool_call,
    understanding,
)


@pytest.fixture
def make_shop(tmp_path: Path) -> Callable[..., Runtime]:
    return lambda endpoint, **settings: build_shop(tmp_path / "home", endpoint, **settings)


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
    assert any("模型服务不可用" in t for t in tasks(runtime))


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


# ---------------------------------------------------------------- every bad response shape


def html(body: dict) -> httpx.Response:
    return httpx.Response(200, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                          headers={"content-type": "text/html"})


def html_labelled_json(body: dict) -> httpx.Response:
    return httpx.Response(200, text="<html>upstream error</html>", headers={"content-type": "application/json"})


def bare(**fields: object) -> Handler:
    return lambda body: httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0,
                                                  "model": "fake", **fields})


def connection_refused(body: dict) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


class Shape(NamedTuple):
    understand: Handler  # how the endpoint answers the understanding call
    reply: Handler  # ... and the reply call (reached only when the understanding call succeeded)
    calls: tuple[int, int]  # (understanding, reply) calls the turn makes
    raised: type[BaseException]  # what the SDK (or our own check) raised, wrapped into BrainUnavailable


OK = understanding(products=["玻尿酸面霜"])
RETRIED, ONCE, REPLY_RETRIED = (3, 0), (1, 0), (1, 3)
SHAPES = {
    "html_body": Shape(html, html, RETRIED, ValueError),
    "html_body_labelled_json": Shape(html_labelled_json, html, RETRIED, json.JSONDecodeError),
    "empty_choices": Shape(bare(choices=[]), html, RETRIED, IndexError),
    "missing_choices": Shape(bare(), html, RETRIED, TypeError),
    "choices_not_a_list": Shape(bare(choices="none"), html, RETRIED, TypeError),
    "null_message": Shape(bare(choices=[{"index": 0, "message": None, "finish_reason": "stop"}]), html, RETRIED,
                          AttributeError),
    "tool_arguments_not_json": Shape(malformed, html, RETRIED, OutputParserException),
    "tool_arguments_of_the_wrong_shape": Shape(tool_call('{"foo": 1}'), html, RETRIED, ValidationError),
    "tool_arguments_a_list": Shape(tool_call("[1, 2]"), html, RETRIED, ValidationError),
    "tool_arguments_of_the_wrong_types": Shape(tool_call(json.dumps({"intent": 5, "tags": "VIP", "facts": [{"k": 1}]})),
                                               html, RETRIED, ValidationError),
    "tool_arguments_an_object_not_a_string": Shape(tool_call({"intent": "greeting"}), html, RETRIED, ValidationError),
    "content_a_number": Shape(OK, text(42), REPLY_RETRIED, ValidationError),
    "content_an_object": Shape(OK, text({"text": "¥9.9"}), REPLY_RETRIED, ValidationError),
    "content_a_list": Shape(OK, text(["今天特价", "¥9.9"]), REPLY_RETRIED, MalformedOutput),
    "content_null": Shape(OK, text(None), REPLY_RETRIED, MalformedOutput),
    "huge_body": Shape(OK, text("哈" * 1_750_000), REPLY_RETRIED, MalformedOutput),
    "bad_request_400": Shape(status(400), html, ONCE, openai.BadRequestError),
    "unauthorized_401": Shape(status(401), html, ONCE, openai.AuthenticationError),
    "forbidden_403": Shape(status(403), html, ONCE, openai.PermissionDeniedError),
    "not_found_404": Shape(status(404), html, ONCE, openai.NotFoundError),
    "unprocessable_422": Shape(status(422), html, ONCE, openai.UnprocessableEntityError),
    "rate_limited_429": Shape(status(429), html, RETRIED, openai.RateLimitError),
    "server_error_500": Shape(status(500), html, RETRIED, openai.InternalServerError),
    "bad_gateway_html_502": Shape(lambda body: httpx.Response(502, text="<html>bad gateway</html>"), html, RETRIED,
                                  openai.InternalServerError),
    "timeout": Shape(timeout, html, RETRIED, openai.APITimeoutError),
    "connection_refused": Shape(connection_refused, html, RETRIED, openai.APIConnectionError),
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_a_bad_response_falls_back_to_the_offline_brain(make_shop, shape: Shape) -> None:
    endpoint = ByCall(shape.understand, shape.reply)
    runtime = make_shop(endpoint)
    (reply,) = say(runtime, "玻尿酸面霜多少钱")
    assert "¥199" in reply and "9.9" not in reply and "哈哈" not in reply  # the offline brain answered
    assert (endpoint.understand_calls, endpoint.reply_calls) == shape.calls  # retried, or not for a client error
    assert sum("模型服务不可用" in t for t in tasks(runtime)) == 1


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_a_bad_response_leaves_the_brain_only_as_brain_unavailable(tmp_path: Path, shape: Shape) -> None:
    endpoint = ByCall(shape.understand, shape.reply)
    brain = LLMBrain(llm_settings(tmp_path), http_client=httpx.Client(transport=httpx.MockTransport(endpoint)),
                     wait=wait_none(), catalog=Catalog())
    turn = TurnInput(text="玻尿酸面霜多少钱", name="王女士", tags=(), taxonomy=())
    with pytest.raises(BrainUnavailable) as raised:
        brain.understand(turn)
        brain.reply(turn, Understanding(intent="product_question"), Facts(products=[{"name": "玻尿酸面霜", "price": 199}]))
    assert type(raised.value) is BrainUnavailable and isinstance(raised.value.__cause__, shape.raised)
    assert brain.calls == sum(shape.calls)


def test_a_reply_within_the_cap_is_sent_and_a_longer_one_is_refused(make_shop) -> None:
    fits = "您好，" + "这款面霜" * 10
    endpoint = FakeEndpoint(understanding(), text(fits), understanding(), text(fits + "！"), text(fits + "！"),
                            text(fits + "！"))
    runtime = make_shop(endpoint, llm_reply_max_chars=len(fits))
    assert say(runtime, "你好呀") == [fits]
    replies = say(runtime, "在吗")
    assert replies and fits + "！" not in replies and len(endpoint.requests) == 6


def test_a_client_error_after_a_good_turn_is_not_retried(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(), text("好的～"), status(401))
    runtime = make_shop(endpoint)
    assert say(runtime, "你好呀") == ["好的～"]
    assert say(runtime, "玻尿酸面霜多少钱") and len(endpoint.requests) == 3


def test_a_completion_with_extra_unknown_fields_is_still_read(make_shop) -> None:
    endpoint = FakeEndpoint(understanding(), lambda body: completion({"role": "assistant", "content": "好的～",
                                                                      "vendor_extra": {"x": 1}}, system_fingerprint=7))
    assert say(make_shop(endpoint), "你好呀") == ["好的～"]
