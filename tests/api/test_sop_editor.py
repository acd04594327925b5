"""The SOP editor's tools: a test run shows what would be sent when; versions diff; a rollback runs an old version."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import OPERATOR

HEADERS = {"Authorization": f"Bearer {OPERATOR}"}
LIBRARY = Path(__file__).resolve().parents[2] / "sop_graphs" / "library" / "sops"


def test_a_test_run_shows_what_the_sop_would_send_and_when(client) -> None:
    response = client.post("/api/sops/new_customer_nurture/test-run", headers=HEADERS,
                           json={"customer": {"name": "小周"}, "days": 3})
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    sends = [e for e in events if e["kind"] == "send"]
    assert sends and sends[0]["step_id"] == "welcome" and "小周" in sends[0]["text"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert any(e["action"] == "ask" for e in sends)


def test_a_test_run_follows_the_simulated_customers_answers(client) -> None:
    response = client.post("/api/sops/new_customer_nurture/test-run", headers=HEADERS,
                           json={"replies": [{"after": "10m", "text": "我是油皮"}], "days": 1})
    kinds = [(e["kind"], e["text"]) for e in response.json()["events"]]
    assert any(kind == "answer" and "油皮" in text for kind, text in kinds)


def test_a_test_run_sends_nothing_for_real_and_leaves_no_customer(client, service) -> None:
    from sqlalchemy import func, select

    from knowledge.tables import Customer
    from sop_graphs.tables import Outbox

    client.post("/api/sops/new_customer_nurture/test-run", headers=HEADERS, json={"days": 2})
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Customer)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(Outbox)).scalar() == 0


def test_a_test_run_of_a_draft_with_an_error_points_at_its_line(client) -> None:
    text = (LIBRARY / "new_customer_nurture.yaml").read_text(encoding="utf-8").replace("kind: ask", "kind: asx", 1)
    response = client.post("/api/sops/new_customer_nurture/test-run", headers=HEADERS, json={"yaml": text})
    assert response.status_code == 422 and response.json()["problems"][0]["line"] > 1


def test_versions_diff_against_the_library_file(client) -> None:
    text = (LIBRARY / "new_customer_nurture.yaml").read_text(encoding="utf-8")
    changed = text.replace("timeout: 3h", "timeout: 6h", 1)
    assert client.put("/api/sops/new_customer_nurture", headers=HEADERS, json={"yaml": changed}).status_code == 201
    diff = client.get("/api/sops/new_customer_nurture/diff?from=0&to=1", headers=HEADERS).json()["diff"]
    assert "-    timeout: 3h" in diff and "+    timeout: 6h" in diff


def test_a_rollback_saves_the_old_text_as_a_new_version_and_publishes_it(client) -> None:
    text = (LIBRARY / "new_customer_nurture.yaml").read_text(encoding="utf-8")
    client.put("/api/sops/new_customer_nurture", headers=HEADERS, json={"yaml": text.replace("timeout: 3h", "timeout: 6h", 1)})
    client.post("/api/sops/new_customer_nurture/publish", headers=HEADERS, json={"version": 1})
    rolled = client.post("/api/sops/new_customer_nurture/rollback", headers=HEADERS, json={"version": 0})
    assert rolled.status_code == 200, rolled.text
    versions = client.get("/api/sops/new_customer_nurture/versions", headers=HEADERS).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "retired"), (2, "published")]
    assert client.get("/api/sops/new_customer_nurture/diff?from=0&to=2", headers=HEADERS).json()["diff"] == ""


def test_an_unknown_version_is_404(client) -> None:
    assert client.get("/api/sops/new_customer_nurture/diff?from=0&to=9", headers=HEADERS).status_code == 404
    assert client.post("/api/sops/new_customer_nurture/rollback", headers=HEADERS,
                       json={"version": 9}).status_code == 404


def test_a_start_without_an_offset_is_the_shops_local_time(client) -> None:
    response = client.post("/api/sops/new_customer_nurture/test-run", headers=HEADERS,
                           json={"start": "2026-11-23T10:00:00", "days": 1})
    assert response.json()["start"].startswith("2026-11-23T10:00:00")
