"""People: password login with roles, what each role may change, an audit log naming the person, offline docs."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api import people
from api.tables import OperatorAccount
from tests.api.conftest import NOW, OPERATOR

ADMIN = {"Authorization": f"Bearer {OPERATOR}"}


@pytest.fixture
def accounts(service) -> None:
    engine = service.runtime.deps.engine
    people.create(engine, "xiaohe", "correct horse", "operator", at=NOW, display_name="小禾")
    people.create(engine, "ajie", "battery staple", "advisor", at=NOW, wecom_userid="AJie")


def _login(client: TestClient, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_a_person_logs_in_with_a_password_and_is_known_by_name_and_role(client, accounts) -> None:
    headers = _login(client, "xiaohe", "correct horse")
    assert client.get("/api/auth/me", headers=headers).json() == {"username": "xiaohe", "role": "operator"}


def test_a_wrong_password_or_unknown_name_is_refused_alike(client, accounts) -> None:
    wrong = client.post("/api/auth/login", json={"username": "xiaohe", "password": "wrong horse"})
    unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "correct horse"})
    assert wrong.status_code == unknown.status_code == 401 and wrong.json() == unknown.json()


def test_passwords_are_stored_as_argon2_hashes(service, accounts) -> None:
    with service.runtime.deps.engine.connect() as conn:
        stored = conn.execute(OperatorAccount.__table__.select()).mappings().all()
    assert all(r["password_hash"].startswith("$argon2id$") and "horse" not in r["password_hash"] for r in stored)


def test_what_a_person_changes_is_audited_under_their_name(client, accounts) -> None:
    headers = _login(client, "xiaohe", "correct horse")
    assert client.post("/api/sops/new_customer_nurture/pause", headers=headers).status_code == 200
    log = client.get("/api/audit", headers=ADMIN).json()
    assert any(e["actor"] == "xiaohe" and e["action"] == "sop.pause" for e in log)


def test_an_advisor_may_work_conversations_but_not_change_sops(client, accounts) -> None:
    headers = _login(client, "ajie", "battery staple")
    refused = client.post("/api/sops/new_customer_nurture/pause", headers=headers)
    assert refused.status_code == 403 and "admin or operator" in refused.json()["detail"]
    assert client.get("/api/tasks", headers=headers).status_code == 200


def test_only_admins_manage_accounts(client, accounts) -> None:
    operator = _login(client, "xiaohe", "correct horse")
    body = {"username": "xiaoman", "password": "long enough", "role": "advisor"}
    assert client.post("/api/operators", json=body, headers=operator).status_code == 403
    created = client.post("/api/operators", json=body, headers=ADMIN)
    assert created.status_code == 201 and "xiaoman" in {a["username"] for a in created.json()}
    assert client.post("/api/operators", json=body, headers=ADMIN).status_code == 409


def test_a_new_password_ends_the_old_sessions(client, accounts) -> None:
    headers = _login(client, "xiaohe", "correct horse")
    assert client.patch("/api/operators/xiaohe", json={"password": "brand new one"}, headers=ADMIN).status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    _login(client, "xiaohe", "brand new one")


def test_a_deactivated_person_cannot_log_in(client, accounts) -> None:
    client.patch("/api/operators/ajie", json={"active": False}, headers=ADMIN)
    assert client.post("/api/auth/login", json={"username": "ajie", "password": "battery staple"}).status_code == 401


def test_logging_out_ends_the_session(client, accounts) -> None:
    headers = _login(client, "xiaohe", "correct horse")
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_my_tasks_are_those_for_my_role_or_my_name(client, service, accounts) -> None:
    from datetime import timedelta

    from sop_graphs.tables import EmployeeTask

    with service.runtime.deps.engine.begin() as conn:
        for key, assignee in (("t1", "advisor"), ("t2", "ajie"), ("t3", "operator")):
            conn.execute(EmployeeTask.__table__.insert().values(key=key, assignee=assignee, kind="handoff", title=key,
                                                                content={}, due_at=NOW + timedelta(hours=1),
                                                                created_at=NOW))
    headers = _login(client, "ajie", "battery staple")
    assert {t["title"] for t in client.get("/api/tasks?mine=true", headers=headers).json()} == {"t1", "t2"}


def test_a_task_for_a_role_reaches_its_peoples_wecom(service, accounts) -> None:
    assert people.userids_of(service.runtime.deps.engine, "advisor") == ["AJie"]
    assert people.userids_of(service.runtime.deps.engine, "operator") == []  # 小禾 has no WeCom userid


def test_repeated_failed_logins_are_slowed_down(client, accounts) -> None:
    codes = [client.post("/api/auth/login", json={"username": "xiaohe", "password": f"guess {i}"}).status_code
             for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_the_api_docs_load_no_asset_from_a_cdn(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") for a in assets)
    assert all(client.get(a).status_code == 200 for a in assets if a.endswith((".js", ".css")))
