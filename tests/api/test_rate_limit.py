"""Web chat rate limits: per session and per client address, 429 with Retry-After, memory bounded."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.rate_limit import RateLimiter
from api.service import Service
from knowledge.clock import SimClock
from knowledge.settings import Settings
from tests.api.conftest import NOW

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_hits_over_the_limit_in_the_window_are_refused():
    limiter = RateLimiter(2, timedelta(minutes=1))
    assert limiter.hit("k", T0) and limiter.hit("k", T0 + timedelta(seconds=1))
    assert not limiter.hit("k", T0 + timedelta(seconds=2))
    assert limiter.retry_after("k", T0 + timedelta(seconds=2)) == 59


def test_the_window_slides():
    limiter = RateLimiter(1, timedelta(minutes=1))
    assert limiter.hit("k", T0) and not limiter.hit("k", T0 + timedelta(seconds=59))
    assert limiter.hit("k", T0 + timedelta(seconds=60))


def test_keys_beyond_the_bound_are_forgotten_oldest_first():
    limiter = RateLimiter(1, timedelta(minutes=1), max_keys=2)
    for key in ("a", "b", "c"):
        limiter.hit(key, T0)
    assert limiter.hit("a", T0)  # forgotten, so allowed again; "c" is still limited
    assert not limiter.hit("c", T0)


@pytest.fixture
def chat(tmp_path):
    service = Service.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0,
                                     chat_wait_seconds=10, chat_rate_per_session=2, chat_rate_per_address=3),
                            clock=SimClock(NOW))
    service.runtime.load_demo_shop()
    with TestClient(create_app(service, run_pump=True)) as client:
        yield client


def test_a_session_over_its_rate_gets_429_with_retry_after(chat):
    first = chat.post("/chat", json={"text": "你好"}).json()
    session = {"session": first["session"]}
    assert chat.post("/chat", json={"text": "在吗", **session}).status_code == 200
    refused = chat.post("/chat", json={"text": "在吗在吗", **session})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_new_sessions_from_one_address_share_its_limit(chat):
    for _ in range(3):
        assert chat.post("/chat", json={"text": "有什么新品吗"}).status_code == 200
    assert chat.post("/chat", json={"text": "有什么新品吗"}).status_code == 429
