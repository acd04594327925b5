"""The chat simulator: a simulated customer plays against the shop's SOPs; each turn shows what changed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from api.simulator import MAX_SESSIONS
from knowledge.tables import Customer
from sop_graphs.tables import Outbox
from tests.api.conftest import OPERATOR

HEADERS = {"Authorization": f"Bearer {OPERATOR}"}


def _start(client, **body):
    response = client.post("/api/simulator", headers=HEADERS, json={"customer": {"name": "小周"}, **body})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(autouse=True)
def _shop(service) -> None:
    service.runtime.load_demo_shop()


def test_adding_the_shop_enrols_the_customer_and_shows_the_welcome(client) -> None:
    first = _start(client)["turns"][0]
    assert first["text"] is None
    assert any(r["step_id"] == "welcome" and "小周" in r["text"] for r in first["replies"])
    assert any(run["sop_id"] == "new_customer_nurture" for run in first["runs"])


def test_an_answer_shows_the_tag_and_the_step_it_changed(client) -> None:
    session = _start(client, sops=["new_customer_nurture"])
    out = client.post(f"/api/simulator/{session['session_id']}/messages", headers=HEADERS,
                      json={"text": "我是油皮，容易出油", "after": "10m"}).json()
    turn = out["turns"][-1]
    assert turn["index"] == 1 and turn["text"] == "我是油皮，容易出油"
    assert turn["tags_added"] and any("油" in tag for tag in turn["tags_added"])
    assert turn["steps_changed"] and turn["steps_changed"][0].startswith("new_customer_nurture:")


def test_a_question_gets_the_agents_answer_in_the_turn(client) -> None:
    session = _start(client)
    turn = client.post(f"/api/simulator/{session['session_id']}/messages", headers=HEADERS,
                       json={"text": "你们发什么快递"}).json()["turns"][-1]
    assert turn["replies"] and any("快递" in r["text"] for r in turn["replies"])


def test_the_simulation_sends_nothing_for_real_and_leaves_no_customer(client, service) -> None:
    session = _start(client)
    client.post(f"/api/simulator/{session['session_id']}/messages", headers=HEADERS, json={"text": "在吗"})
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Customer)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(Outbox)).scalar() == 0


def test_an_ended_session_is_gone_and_its_directory_removed(client) -> None:
    session = _start(client)
    home = client.app.state.simulator._sessions[session["session_id"]].shop.home
    assert client.delete(f"/api/simulator/{session['session_id']}", headers=HEADERS).status_code == 204
    assert not home.exists()
    response = client.post(f"/api/simulator/{session['session_id']}/messages", headers=HEADERS, json={"text": "在吗"})
    assert response.status_code == 404


def test_sessions_are_bounded_and_the_oldest_is_closed(client) -> None:
    ids = [_start(client)["session_id"] for _ in range(MAX_SESSIONS + 1)]
    assert len(client.app.state.simulator._sessions) == MAX_SESSIONS
    assert client.post(f"/api/simulator/{ids[0]}/messages", headers=HEADERS, json={"text": "在吗"}).status_code == 404


def test_unknown_sops_and_bad_durations_are_refused(client) -> None:
    assert client.post("/api/simulator", headers=HEADERS, json={"sops": ["nope"]}).status_code == 422
    session = _start(client)
    response = client.post(f"/api/simulator/{session['session_id']}/messages", headers=HEADERS,
                           json={"text": "在吗", "after": "999d"})
    assert response.status_code == 422


def test_the_simulator_needs_an_operator(client) -> None:
    assert client.post("/api/simulator", json={}).status_code == 401
