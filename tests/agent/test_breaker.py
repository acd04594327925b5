"""The LLM circuit breaker: opens after N consecutive failures, one review task per outage, a probe after the
cool-down (on the injected clock) closes it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent.breaker import CircuitBreaker, CircuitState
from agent.runtime import Runtime
from knowledge.clock import SimClock
from tests.agent.conftest import say
from tests.agent.llm_fakes import ByCall, build_shop, status, tasks, text, understanding

COOLDOWN = timedelta(seconds=30)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(datetime(2026, 11, 23, 7, tzinfo=UTC))


@pytest.fixture
def breaker(clock: SimClock) -> CircuitBreaker:
    return CircuitBreaker(clock, threshold=3, cooldown=COOLDOWN)


def test_the_circuit_opens_after_n_consecutive_failures(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure("503")
    assert breaker.status().state is CircuitState.CLOSED
    breaker.record_failure("503")
    assert breaker.status().state is CircuitState.OPEN and breaker.status().consecutive_failures == 3
    assert not breaker.allow() and not breaker.allow()
    assert breaker.status().short_circuited_total == 2


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure("503")
    breaker.record_failure("503")
    breaker.record_success()
    breaker.record_failure("503")
    assert breaker.status().state is CircuitState.CLOSED and breaker.status().consecutive_failures == 1


def test_after_the_cool_down_exactly_one_probe_goes_out(breaker: CircuitBreaker, clock: SimClock) -> None:
    for _ in range(3):
        breaker.record_failure("503")
    clock.advance(COOLDOWN - timedelta(seconds=1))
    assert not breaker.allow()
    clock.advance(timedelta(seconds=1))
    assert breaker.status().state is CircuitState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for it
    breaker.record_success()
    assert breaker.status().state is CircuitState.CLOSED and breaker.allow()


def test_a_failed_probe_opens_the_circuit_for_another_cool_down(breaker: CircuitBreaker, clock: SimClock) -> None:
    for _ in range(3):
        breaker.record_failure("503")
    clock.advance(COOLDOWN)
    assert breaker.allow()
    breaker.record_failure("still 503")
    status = breaker.status()
    assert status.state is CircuitState.OPEN and status.opened_at == clock.now() and status.opened_total == 2
    assert not breaker.allow()
    clock.advance(COOLDOWN)
    assert breaker.allow()


def test_a_probe_that_never_reports_back_is_retried_after_another_cool_down(breaker: CircuitBreaker,
                                                                             clock: SimClock) -> None:
    for _ in range(3):
        breaker.record_failure("503")
    clock.advance(COOLDOWN)
    assert breaker.allow()  # its turn is abandoned: neither success nor failure is recorded
    assert not breaker.allow()
    clock.advance(COOLDOWN)
    assert breaker.allow()


def test_one_incident_is_claimed_per_outage(breaker: CircuitBreaker, clock: SimClock) -> None:
    assert not breaker.claim_incident()  # no outage
    breaker.record_failure("503")
    assert breaker.claim_incident()
    for _ in range(4):
        breaker.record_failure("503")
        assert not breaker.claim_incident()
    clock.advance(COOLDOWN)
    breaker.allow()
    breaker.record_success()
    breaker.record_failure("timeout")  # a new outage
    assert breaker.claim_incident()


# ---------------------------------------------------------------- wired into conversation turns


class Switchable:
    """An endpoint that is down (503) or up (answers the two calls of a turn)."""

    def __init__(self) -> None:
        self.up = False
        self.down = ByCall(status(503), status(503))
        self.healthy = ByCall(understanding(), text("好的，在的～"))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return (self.healthy if self.up else self.down)(request)

    @property
    def requests(self) -> int:
        return self.down.requests + self.healthy.requests


@pytest.fixture
def shop(tmp_path: Path) -> Callable[[Switchable], Runtime]:
    return lambda endpoint: build_shop(tmp_path / "home", endpoint, llm_breaker_failures=3,
                                       llm_breaker_cooldown_seconds=COOLDOWN.total_seconds())


def _outage_tasks(runtime: Runtime) -> list[str]:
    return [t for t in tasks(runtime) if "模型服务不可用" in t]


def test_an_outage_opens_the_circuit_and_later_turns_do_not_call_the_endpoint(shop) -> None:
    endpoint = Switchable()
    runtime = shop(endpoint)
    for message in ("玻尿酸面霜多少钱", "你好", "在吗"):
        assert say(runtime, message)  # the offline brain answers each
    assert endpoint.requests == 9  # three failed turns, three attempts each
    breaker = runtime.conversation.breaker
    assert breaker.status().state is CircuitState.OPEN
    assert "¥199" in say(runtime, "玻尿酸面霜多少钱")[0] and endpoint.requests == 9  # offline, without a call


def _outage(runtime) -> None:
    """Three turns while the endpoint is down: the circuit opens."""
    for message in ("你好", "在吗", "有人吗"):
        say(runtime, message)


def test_an_outage_opens_exactly_one_review_task(shop) -> None:
    endpoint = Switchable()
    runtime = shop(endpoint)
    for message in ("玻尿酸面霜多少钱", "你好", "在吗", "面霜有货吗", "谢谢"):
        say(runtime, message)
    assert len(_outage_tasks(runtime)) == 1


def test_a_probe_after_the_cool_down_closes_the_circuit(shop) -> None:
    endpoint = Switchable()
    runtime = shop(endpoint)
    _outage(runtime)
    endpoint.up = True
    assert "好的，在的～" not in say(runtime, "你好呀") and endpoint.healthy.requests == 0  # still cooling down
    runtime.deps.clock.advance(COOLDOWN)
    assert "好的，在的～" in say(runtime, "你好呀")  # the probe went out and the model answered
    assert runtime.conversation.breaker.status().state is CircuitState.CLOSED
    assert "好的，在的～" in say(runtime, "谢谢") and endpoint.healthy.requests == 4


def test_a_failed_probe_keeps_the_outage_and_its_one_task(shop) -> None:
    endpoint = Switchable()
    runtime = shop(endpoint)
    _outage(runtime)
    runtime.deps.clock.advance(COOLDOWN)
    say(runtime, "你好呀")  # the probe: still down
    assert endpoint.requests == 12 and runtime.conversation.breaker.status().state is CircuitState.OPEN
    say(runtime, "在吗")
    assert endpoint.requests == 12 and len(_outage_tasks(runtime)) == 1


def test_a_second_outage_after_recovery_opens_a_second_task(shop) -> None:
    endpoint = Switchable()
    runtime = shop(endpoint)
    _outage(runtime)
    endpoint.up = True
    runtime.deps.clock.advance(COOLDOWN)
    say(runtime, "你好呀")
    endpoint.up = False
    say(runtime, "玻尿酸面霜多少钱")
    assert len(_outage_tasks(runtime)) == 2
