"""SOPs for the console: counts per status, drafts never published, validation as the editor types, sources,
and each live run's next scheduled step."""

from __future__ import annotations

from pathlib import Path

from agent.inbound import submit

NURTURE = Path("sop_graphs/library/sops/new_customer_nurture.yaml")
NEW_SOP = """id: vip_thanks
name: VIP 感谢
family: behaviour
goal: 复购客户收到一句感谢
triggers:
  - on: tag_added
    tag: 高意向
steps:
  - id: mark
    kind: tag
    add: [顾问跟进]
  - id: done
    kind: end
"""


def _add(service, cid="c1"):
    submit(service.runtime.deps, key=f"add-{cid}", customer_id=cid, kind="customer_added", payload={"name": "小林"})
    service.pump_once()


def test_the_list_counts_enrolled_live_and_completed_runs(client, service, operator_headers):
    _add(service)
    sops = {s["id"]: s for s in client.get("/api/sops", headers=operator_headers).json()}
    nurture = sops["new_customer_nurture"]
    assert (nurture["enrolled"], nurture["live_runs"], nurture["completed"], nurture["status"]) == (1, 1, 0, "running")


def test_a_malformed_draft_is_flagged_at_its_line_and_column(client, operator_headers):
    yaml = "id: x\nname: [unclosed\nsteps: []\n"
    response = client.post("/api/sops/x/validate", json={"yaml": yaml}, headers=operator_headers)
    assert response.status_code == 200
    problems = response.json()["problems"]
    assert problems and problems[0]["line"] >= 2 and problems[0]["column"] >= 1
    assert response.json()["graph"] is None


def test_a_semantic_problem_points_at_the_key_it_is_about(client, operator_headers):
    text = NURTURE.read_text(encoding="utf-8")
    yaml = text.replace("next: invite", "next: nowhere", 1)
    problems = client.post("/api/sops/new_customer_nurture/validate", json={"yaml": yaml},
                           headers=operator_headers).json()["problems"]
    bad = next(p for p in problems if "nowhere" in p["reason"])
    row = yaml.splitlines()[bad["line"] - 1]
    assert row[bad["column"] - 1:].lstrip("- ").startswith(row.strip("- ")[:3])


def test_a_valid_draft_has_no_problems_and_a_graph(client, operator_headers):
    body = {"yaml": NURTURE.read_text(encoding="utf-8")}
    out = client.post("/api/sops/new_customer_nurture/validate", json=body, headers=operator_headers).json()
    assert out["problems"] == [] and out["graph"].startswith("flowchart")


def test_validating_saves_nothing(client, operator_headers):
    client.post("/api/sops/new_customer_nurture/validate", json={"yaml": NURTURE.read_text(encoding="utf-8")},
                headers=operator_headers)
    assert client.get("/api/sops/new_customer_nurture/versions", headers=operator_headers).json() == []


def test_a_new_sop_saved_as_draft_is_listed_as_a_draft(client, operator_headers):
    response = client.put("/api/sops/vip_thanks", json={"yaml": NEW_SOP}, headers=operator_headers)
    assert response.status_code == 201, response.text
    sops = {s["id"]: s for s in client.get("/api/sops", headers=operator_headers).json()}
    assert sops["vip_thanks"]["status"] == "draft" and sops["vip_thanks"]["latest_version"] == 1
    assert sops["vip_thanks"]["name"] == "VIP 感谢"


def test_the_source_is_the_newest_version_else_the_library_file(client, operator_headers):
    text = NURTURE.read_text(encoding="utf-8")
    assert client.get("/api/sops/new_customer_nurture/source", headers=operator_headers).json() == {
        "sop_id": "new_customer_nurture", "version": 0, "yaml": text}
    edited = text.replace("name:", "name: 新版", 1) if "name:" in text else text
    client.put("/api/sops/new_customer_nurture", json={"yaml": edited}, headers=operator_headers)
    out = client.get("/api/sops/new_customer_nurture/source", headers=operator_headers).json()
    assert out["version"] == 1 and out["yaml"] == edited


def test_a_live_run_shows_its_next_scheduled_step(client, service, operator_headers):
    _add(service)
    runs = client.get("/api/customers/c1/runs", headers=operator_headers).json()
    nurture = next(r for r in runs if r["sop_id"] == "new_customer_nurture")
    assert nurture["next_step"] and nurture["next_due_at"]


def test_the_list_says_which_sops_have_a_library_file(client, operator_headers):
    client.put("/api/sops/vip_thanks", json={"yaml": NEW_SOP}, headers=operator_headers)
    sops = {s["id"]: s for s in client.get("/api/sops", headers=operator_headers).json()}
    assert sops["new_customer_nurture"]["library_file"] is True and sops["vip_thanks"]["library_file"] is False
