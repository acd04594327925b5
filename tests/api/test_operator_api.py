"""The operator API: auth, SOP versions with validation as data, customers, takeover, tasks, knowledge, audit."""

from pathlib import Path

import pytest

from agent.inbound import submit

NURTURE = Path("sop_graphs/library/sops/new_customer_nurture.yaml")


def _add(service, cid="c1", text=None):
    submit(service.runtime.deps, key=f"add-{cid}", customer_id=cid, kind="customer_added", payload={"name": "小林"})
    service.pump_once()
    if text:
        submit(service.runtime.deps, key=f"m-{cid}", customer_id=cid, kind="message", payload={"text": text})
        service.pump_once()


@pytest.mark.parametrize("path", ["/api/sops", "/api/customers", "/api/tasks", "/api/audit"])
def test_operator_routes_refuse_without_the_bearer_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_lists_the_library_with_live_runs(client, service, operator_headers):
    _add(service)
    sops = {s["id"]: s for s in client.get("/api/sops", headers=operator_headers).json()}
    assert len(sops) >= 14 and sops["new_customer_nurture"]["live_runs"] == 1


def test_invalid_sop_comes_back_as_problems_with_lines(client, operator_headers):
    yaml = NURTURE.read_text(encoding="utf-8").replace("next: invite", "next: nowhere", 1)
    response = client.put("/api/sops/new_customer_nurture", json={"yaml": yaml}, headers=operator_headers)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert any("nowhere" in p["reason"] and p["line"] > 1 for p in problems)


def test_malformed_yaml_is_a_problem_not_a_crash(client, operator_headers):
    response = client.put("/api/sops/x", json={"yaml": "id: [unclosed"}, headers=operator_headers)
    assert response.status_code == 422 and response.json()["problems"][0]["reason"].startswith("malformed YAML")


def test_saved_version_runs_only_after_publish(client, service, operator_headers):
    yaml = NURTURE.read_text(encoding="utf-8").replace("name:", "name: 新版", 1)
    saved = client.put("/api/sops/new_customer_nurture", json={"yaml": yaml}, headers=operator_headers).json()
    assert saved["version"] == 1 and saved["status"] == "draft"
    assert not service.runtime.deps.library.sops["new_customer_nurture"].name.startswith("新版")
    client.post("/api/sops/new_customer_nurture/publish", json={"version": 1}, headers=operator_headers)
    assert service.runtime.deps.library.sops["new_customer_nurture"].name.startswith("新版")
    versions = client.get("/api/sops/new_customer_nurture/versions", headers=operator_headers).json()
    assert [v["status"] for v in versions] == ["published"]


def test_paused_sop_enrols_nobody(client, service, operator_headers):
    assert client.post("/api/sops/new_customer_nurture/pause", headers=operator_headers).json()["enabled"] is False
    _add(service)
    sops = {s["id"]: s for s in client.get("/api/sops", headers=operator_headers).json()}
    assert sops["new_customer_nurture"]["live_runs"] == 0


def test_graph_is_mermaid(client, operator_headers):
    text = client.get("/api/sops/new_customer_nurture/graph", headers=operator_headers).text
    assert text.startswith("flowchart") or text.startswith("graph")


def test_customer_search_by_tag_and_profile_with_provenance(client, service, operator_headers):
    _add(service, "c1", "4")  # answers the skin question: 敏感肌
    _add(service, "c2")
    found = client.get("/api/customers", params={"tag": "敏感肌"}, headers=operator_headers).json()
    assert [c["id"] for c in found] == ["c1"]
    profile = client.get("/api/customers/c1", headers=operator_headers).json()
    assert any(t["tag"] == "敏感肌" and t["source"] for t in profile["tag_provenance"])
    assert client.get("/api/customers/c1/timeline", headers=operator_headers).json()
    assert client.get("/api/customers/c1/runs", headers=operator_headers).json()[0]["sop_id"]


def test_unknown_customer_is_404(client, operator_headers):
    assert client.get("/api/customers/nobody", headers=operator_headers).status_code == 404


def test_takeover_pauses_the_bot_until_release(client, service, operator_headers):
    _add(service)
    client.post("/api/conversations/c1/takeover", json={"by": "lisi"}, headers=operator_headers)
    submit(service.runtime.deps, key="q1", customer_id="c1", kind="message", payload={"text": "面霜多少钱"})
    service.pump_once()
    assert "¥" not in _reply_text(service, "reply/q1")  # acknowledged for the human, never answered by the bot
    client.post("/api/conversations/c1/release", json={"by": "lisi"}, headers=operator_headers)
    submit(service.runtime.deps, key="q2", customer_id="c1", kind="message", payload={"text": "面霜多少钱"})
    service.pump_once()
    assert _replied(service, "reply/q2")


def _reply_text(service, key):
    from sqlalchemy import select

    from sop_graphs.tables import Outbox
    with service.runtime.deps.engine.connect() as conn:
        payload = conn.execute(select(Outbox.payload).where(Outbox.key == key)).scalar()
    return (payload or {}).get("text", "")


def _replied(service, key):
    from sqlalchemy import select

    from sop_graphs.tables import Outbox
    with service.runtime.deps.engine.connect() as conn:
        return conn.execute(select(Outbox.key).where(Outbox.key == key)).first() is not None


def test_tasks_can_be_completed(client, service, operator_headers):
    _add(service, "c1", "转人工")
    tasks = client.get("/api/tasks", headers=operator_headers).json()
    assert tasks
    done = client.post(f"/api/tasks/{tasks[0]['id']}/complete", headers=operator_headers).json()
    assert done["status"] == "done"
    assert client.post("/api/tasks/999999/complete", headers=operator_headers).status_code == 404


def test_knowledge_import_reports_bad_rows_and_imports_nothing(client, operator_headers):
    csv = "sku,name,price\nX1,新品面膜,59\nX2,坏行,not-a-price\n"
    response = client.post("/api/knowledge/products", json={"format": "csv", "content": csv},
                           headers=operator_headers)
    assert response.status_code == 422 and response.json()["errors"][0]["row"] == 3  # the row Excel shows
    ok = client.post("/api/knowledge/products", json={"format": "csv", "content": "sku,name,price\nX1,新品面膜,59\n"},
                     headers=operator_headers).json()
    assert ok["written"] == 1 and ok["indexed"] >= 1


def test_every_change_is_in_the_audit_log(client, service, operator_headers):
    _add(service)
    client.post("/api/sops/new_customer_nurture/pause", headers=operator_headers)
    client.post("/api/conversations/c1/takeover", json={"by": "lisi"}, headers=operator_headers)
    actions = [a["action"] for a in client.get("/api/audit", headers=operator_headers).json()]
    assert actions == ["conversation.takeover", "sop.pause"]


def test_openapi_documents_every_operator_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/sops/{sop_id}/publish", "/api/customers/{customer_id}/timeline", "/api/tasks/{task_id}/complete",
                 "/api/knowledge/{kind}", "/api/audit", "/wecom/callback", "/chat", "/chat/stream", "/metrics"):
        assert path in paths


def test_release_resets_the_unanswered_counter(client, service, operator_headers):
    from sqlalchemy import update

    from agent.tables import CustomerMemory

    _add(service)
    with service.runtime.deps.engine.begin() as conn:
        conn.execute(CustomerMemory.__table__.insert().values(customer_id="c1", summary="", products=[],
                                                              open_issues=[], unanswered_streak=1, turns=3))
        conn.execute(update(CustomerMemory.__table__).values(unanswered_streak=1))
    client.post("/api/conversations/c1/takeover", json={"by": "lisi"}, headers=operator_headers)
    client.post("/api/conversations/c1/release", json={"by": "lisi"}, headers=operator_headers)
    with service.runtime.deps.engine.connect() as conn:
        from sqlalchemy import select

        assert conn.execute(select(CustomerMemory.unanswered_streak)).scalar() == 0


def test_the_audit_log_filters_by_person_and_action_prefix(client, operator_headers):
    yaml = NURTURE.read_text(encoding="utf-8")
    client.put("/api/sops/new_customer_nurture", json={"yaml": yaml}, headers=operator_headers)
    client.post("/api/sops/new_customer_nurture/pause", headers=operator_headers)
    response = client.get("/api/audit", params={"action": "sop.", "actor": "operator", "limit": 1},
                          headers=operator_headers)
    assert response.headers["X-Total-Count"] == "2"
    assert [e["action"] for e in response.json()] == ["sop.pause"]
    assert client.get("/api/audit", params={"actor": "nobody"}, headers=operator_headers).json() == []
