"""A fake OpenAI-compatible endpoint (httpx MockTransport) and a demo-shop runtime whose brain calls it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from tenacity import wait_none

from agent.llm_brain import LLMBrain
from agent.runtime import Runtime, load_valid_library
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer
from sop_graphs.tables import EmployeeTask

Handler = Callable[[dict], httpx.Response]
START = datetime(2026, 11, 23, 7, tzinfo=UTC)


def understanding(**fields: Any) -> Handler:
    """A structured-output answer (a tool call to the Understanding function)."""
    args = {"intent": "product_question", "products": [], "facts": [], "tags": [], "sentiment": "neutral",
            "needs_human": False, "is_question": True, **fields}
    return tool_call(json.dumps(args, ensure_ascii=False))


def tool_call(arguments: Any) -> Handler:
    """A tool call whose ``arguments`` are sent exactly as given (a string normally; anything for bad shapes)."""
    def respond(body: dict) -> httpx.Response:
        name = body["tools"][0]["function"]["name"]
        return completion({"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}]})
    return respond


def text(content: Any) -> Handler:
    return lambda body: completion({"role": "assistant", "content": content})


def status(code: int) -> Handler:
    return lambda body: httpx.Response(code, json={"error": {"message": f"status {code}", "type": "x"}})


def timeout(body: dict) -> httpx.Response:
    raise httpx.ReadTimeout("fake endpoint timed out")


def malformed(body: dict) -> httpx.Response:
    return tool_call("{not json")(body)


def completion(message: Any, **body: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                                     **body})


class FakeEndpoint:
    """Serves scripted responses in order and records every request."""

    def __init__(self, *script: Handler) -> None:
        self.script = list(script)
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return self.script.pop(0)(body)


class ByCall:
    """Answers the understanding call (it offers a tool) with one handler and the reply call with another,
    however often each is made; counts both."""

    def __init__(self, understand: Handler, reply: Handler) -> None:
        self.understand, self.reply = understand, reply
        self.understand_calls = self.reply_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("tools"):
            self.understand_calls += 1
            return self.understand(body)
        self.reply_calls += 1
        return self.reply(body)

    @property
    def requests(self) -> int:
        return self.understand_calls + self.reply_calls


class HeldFor(ByCall):
    """Answers like the model, except that calls carrying ``held`` in their prompt wait until released."""

    def __init__(self, held: str) -> None:
        super().__init__(understanding(intent="greeting"), text("您好呀～在的"))
        self.held = held
        self.release = threading.Event()
        self.waiting = threading.Event()
        self.answered = threading.Event()  # a held call came back (released, or the test gave up on it)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.held in request.content.decode():
            self.waiting.set()
            released = self.release.wait(30)
            self.answered.set()
            assert released, "the test never released the held call"
        return super().__call__(request)


def llm_settings(home: Path, **extra: Any) -> Settings:
    return Settings(**{"home": home, "embedder": "hash", "burst_window_seconds": 0, "brain": "llm",
                       "openai_base_url": "http://fake-llm/v1", "openai_api_key": "sk-test", "llm_max_attempts": 3,
                       **extra})


def build_shop(home: Path, endpoint: Callable[[httpx.Request], httpx.Response], **settings: Any) -> Runtime:
    """The demo shop with two known customers; the brain talks to ``endpoint`` and never sleeps between attempts."""
    config = llm_settings(home, **settings)
    library = load_valid_library(config.library_path)
    brain = LLMBrain(config, http_client=httpx.Client(transport=httpx.MockTransport(endpoint)), wait=wait_none(),
                     catalog=library.catalog)
    runtime = Runtime.build(config, clock=SimClock(START), library=library, brain=brain)
    runtime.load_demo_shop()
    with runtime.deps.engine.begin() as conn:
        for cid in ("c_demo_wang", "c_demo_li"):
            conn.execute(Customer.__table__.insert().values(id=cid, name="王女士", added_at=runtime.deps.clock.now(),
                                                            stage="active", attributes={}))
    return runtime


def tasks(runtime: Runtime) -> list[str]:
    with runtime.deps.engine.connect() as conn:
        return list(conn.execute(select(EmployeeTask.title)).scalars())
