"""Catalogue files (素材, coupon campaigns, groups, tags) edited through the API: checked against every SOP,
versioned, audited, and running without a restart — here and in a separate worker."""

from __future__ import annotations

from pathlib import Path

from api.service import Service
from knowledge.clock import SimClock
from tests.api.conftest import NOW, OPERATOR, wecom_settings

HEADERS = {"Authorization": f"Bearer {OPERATOR}"}
LIBRARY = Path(__file__).resolve().parents[2] / "sop_graphs" / "library"
NEW_MATERIAL = '\nwinter_care:\n  title: 冬季护理\n  text: "{name}，天冷了记得加一层面霜哦～"\n'


def _materials() -> str:
    return (LIBRARY / "materials.yaml").read_text(encoding="utf-8")


def test_a_new_material_runs_without_a_restart(client, service) -> None:
    response = client.put("/api/library/materials.yaml", json={"yaml": _materials() + NEW_MATERIAL}, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.json()[-1]["version"] == 1 and response.json()[-1]["status"] == "published"
    assert "winter_care" in service.runtime.deps.library.catalog.materials
    assert "winter_care" in client.get("/api/library/materials.yaml", headers=HEADERS).json()["yaml"]


def test_removing_a_material_an_sop_sends_is_refused_at_that_sops_line(client, service) -> None:
    text = _materials().replace("daily_checkin:", "daily_checkin_old:", 1)
    response = client.put("/api/library/materials.yaml", json={"yaml": text}, headers=HEADERS)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert any("daily_checkin" in p["reason"] and p["line"] > 1 for p in problems)
    assert "daily_checkin" in service.runtime.deps.library.catalog.materials  # nothing changed


def test_malformed_yaml_is_a_problem_with_its_line(client) -> None:
    response = client.put("/api/library/tags.yaml", json={"yaml": "肤质: [\n"}, headers=HEADERS)
    assert response.status_code == 422 and response.json()["problems"][0]["reason"].startswith("malformed YAML")


def test_an_edit_is_versioned_and_audited(client) -> None:
    for _ in range(2):
        client.put("/api/library/materials.yaml", json={"yaml": _materials() + NEW_MATERIAL}, headers=HEADERS)
    versions = client.get("/api/library/materials.yaml/versions", headers=HEADERS).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "retired"), (2, "published")]
    assert [e["action"] for e in client.get("/api/audit", headers=HEADERS).json()].count("library.edit") == 2


def test_only_the_catalogue_files_can_be_edited(client) -> None:
    assert client.put("/api/library/intents.yaml", json={"yaml": "x: 1"}, headers=HEADERS).status_code == 422
    assert client.get("/api/library/../settings.py", headers=HEADERS).status_code == 404


def test_a_separate_worker_follows_a_catalogue_edit(client, service, tmp_path, fake) -> None:
    worker = Service.build(wecom_settings(tmp_path / "home"), clock=SimClock(NOW), wecom_transport=fake.transport())
    try:
        client.put("/api/library/materials.yaml", json={"yaml": _materials() + NEW_MATERIAL}, headers=HEADERS)
        assert "winter_care" not in worker.runtime.deps.library.catalog.materials
        assert worker.sync_library(force=True)
        assert "winter_care" in worker.runtime.deps.library.catalog.materials
    finally:
        worker.stop()
