"""A model call that hangs holds nothing: operator actions and other customers go on while it is out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent.inbound import submit
from agent.tables import Message
from api.app import create_app
from api.service import Service
from knowledge.clock import SimClock
from knowledge.tables import Customer
from tests.agent.llm_fakes import HeldFor, llm_settings
from tests.api.conftest import NOW, OPERATOR


def _service(home: Path, endpoint: HeldFor) -> Service:
    settings = llm_settings(home, operator_token=OPERATOR)
    service = Service.build(settings, clock=SimClock(NOW), llm_http=httpx.Client(transport=httpx.MockTransport(endpoint)))
    with service.runtime.deps.engine.begin() as conn:
        for cid in ("c_slow", "c_other"):
            conn.execute(Customer.__table__.insert().values(id=cid, name="客人", added_at=NOW, stage="active",
                                                            attributes={}))
    return service


def _replies(service: Service, cid: str) -> list[str]:
    with service.runtime.deps.engine.connect() as conn:
        return list(conn.execute(select(Message.text).where(Message.customer_id == cid, Message.direction == "out"))
                    .scalars())


def _until(condition, service: Service) -> None:
    for _ in range(5000):
        if condition():
            return
        service.wake()
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[tuple[Service, HeldFor]]:
    """A pumping service whose model call for one customer ("慢慢想") is out and will not come back."""
    endpoint = HeldFor("慢慢想")
    service = _service(tmp_path / "home", endpoint)
    service.start(interval=0.05)
    try:
        submit(service.runtime.deps, key="m/slow", customer_id="c_slow", kind="message", payload={"text": "慢慢想"},
               at=NOW)
        _until(endpoint.waiting.is_set, service)
        yield service, endpoint
    finally:
        endpoint.release.set()
        service.stop()


def test_an_operator_pause_returns_while_a_model_call_hangs(hanging: tuple[Service, HeldFor]) -> None:
    service, endpoint = hanging
    client = TestClient(create_app(service, run_pump=False))
    response = client.post("/api/sops/new_customer_nurture/pause", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert not endpoint.answered.is_set()  # the pause did not wait for the model


def test_another_customer_is_answered_while_a_model_call_hangs(hanging: tuple[Service, HeldFor]) -> None:
    service, endpoint = hanging
    submit(service.runtime.deps, key="m/other", customer_id="c_other", kind="message", payload={"text": "在吗"},
           at=NOW)
    _until(lambda: bool(_replies(service, "c_other")), service)
    assert _replies(service, "c_slow") == [] and not endpoint.answered.is_set()
    endpoint.release.set()
    _until(lambda: bool(_replies(service, "c_slow")), service)
