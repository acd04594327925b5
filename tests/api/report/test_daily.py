"""The report as the service runs it: made each morning by the pump and sent to the operators once, served by the
operator API, and written by ``sopagent report``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.report import daily
from api.service import Service
from knowledge.clock import SimClock
from knowledge.settings import Settings, get_settings
from knowledge.tables import Customer
from sop_graphs.channel import SandboxChannel

OPERATOR = "op-secret"
# Wednesday 2026-11-25 09:00 in Shanghai: past the 08:30 report time, so Tuesday's report is due
MORNING = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def _service(tmp_path, clock: SimClock, **extra) -> Service:
    settings = Settings(home=tmp_path / "home", embedder="hash", operator_token=OPERATOR, **extra)
    service = Service.build(settings, clock=clock)
    with service.runtime.deps.engine.begin() as conn:  # a customer since Monday: the shop has something to review
        conn.execute(Customer.__table__.insert().values(id="c1", name="王女士", stage="active", attributes={},
                                                        added_at=MORNING - timedelta(days=2)))
    return service


def _wait_report(service: Service) -> None:
    thread = service._reporting
    if thread is not None:
        thread.join(60)


def _summaries(service: Service) -> list[dict]:
    channel = service.runtime.deps.channel
    assert isinstance(channel, SandboxChannel)
    return [r for r in channel.records(daily.OPERATORS) if r["mode"] == "app_markdown"]


def test_the_pump_makes_yesterdays_report_after_the_report_time_and_tells_the_operators_once(tmp_path) -> None:
    service = _service(tmp_path, SimClock(MORNING))
    try:
        service.pump_once()
        _wait_report(service)
        service.pump_once()
        _wait_report(service)
        (summary,) = _summaries(service)
        assert summary["key"] == "report/2026-11-24" and "2026-11-24" in summary["payload"]["text"]
        assert summary["payload"]["touser"] == "@all"
        assert (tmp_path / "home" / "reports" / "2026-11-24.html").is_file()
    finally:
        service.stop()


def test_no_report_is_made_before_the_report_time(tmp_path) -> None:
    service = _service(tmp_path, SimClock(MORNING - timedelta(hours=1)))  # 08:00 local
    try:
        service.pump_once()
        _wait_report(service)
        assert _summaries(service) == []
    finally:
        service.stop()


@pytest.fixture
def client_with_report(tmp_path):
    service = _service(tmp_path, SimClock(MORNING))
    service.pump_once()
    _wait_report(service)
    yield TestClient(create_app(service, run_pump=False))
    service.stop()


HEADERS = {"Authorization": f"Bearer {OPERATOR}"}


def test_reports_are_listed_newest_first_for_operators_only(client_with_report) -> None:
    assert client_with_report.get("/api/reports").status_code == 401
    (listed,) = client_with_report.get("/api/reports", headers=HEADERS).json()
    assert listed["day"] == "2026-11-24" and listed["narrative_source"] == "offline"


def test_a_report_is_served_as_json_html_and_markdown(client_with_report) -> None:
    data = client_with_report.get("/api/reports/2026-11-24", headers=HEADERS).json()
    assert data["day"] == "2026-11-24" and data["metrics"]["customers_total"] == 1 and data["narrative"]["text"]
    html = client_with_report.get("/api/reports/2026-11-24?format=html", headers=HEADERS)
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text and "https://" not in html.text
    md = client_with_report.get("/api/reports/2026-11-24?format=md", headers=HEADERS)
    assert md.headers["content-type"].startswith("text/markdown") and "## 目标达成" in md.text


def test_an_unknown_day_is_404_and_a_malformed_one_422(client_with_report) -> None:
    assert client_with_report.get("/api/reports/2026-01-01", headers=HEADERS).status_code == 404
    assert client_with_report.get("/api/reports/not-a-day", headers=HEADERS).status_code == 422
    assert client_with_report.get("/api/reports/2026-11-24?format=pdf", headers=HEADERS).status_code == 422


def test_the_cli_writes_the_report_of_a_day(tmp_path, monkeypatch) -> None:
    service = _service(tmp_path, SimClock(MORNING))
    service.stop()
    monkeypatch.setenv("SOPAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOPAGENT_EMBEDDER", "hash")
    get_settings.cache_clear()
    try:
        out = tmp_path / "r.json"
        result = CliRunner().invoke(cli, ["report", "--date", "2026-11-24", "--format", "json", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text(encoding="utf-8"))["day"] == "2026-11-24" and str(out) in result.output
        bad = CliRunner().invoke(cli, ["report", "--date", "24/11/2026"])
        assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output
    finally:
        get_settings.cache_clear()
