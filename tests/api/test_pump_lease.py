"""One pump per database, and library changes reaching a separate worker process."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from api.service import Service
from knowledge.clock import SimClock
from tests.api.conftest import NOW, wecom_settings

NURTURE = Path(__file__).resolve().parents[2] / "sop_graphs" / "library" / "sops" / "new_customer_nurture.yaml"


@pytest.fixture
def worker(tmp_path, fake, service) -> Service:
    """A second process on the same database (``sopagent worker`` beside ``serve``), with its own clock."""
    clock = SimClock(NOW)
    svc = Service.build(wecom_settings(tmp_path / "home"), clock=clock, wecom_transport=fake.transport())
    yield svc
    svc.stop()


def test_a_second_pump_on_the_same_database_stands_by(service, worker):
    service.pump_once()
    assert worker.pump_once() == 0
    assert worker.standing_by and "standing by" in worker.standing_by and service.standing_by is None


def test_the_standing_by_pump_takes_over_when_the_holder_stops_renewing(service, worker):
    service.pump_once()
    worker.pump_once()
    stalled = timedelta(seconds=service.settings.pump_lease_seconds + 1)  # the holder stalls; time goes on
    worker.clock.advance(stalled)
    worker.pump_once()
    assert worker.standing_by is None
    service.clock.advance(stalled)  # the holder comes back: it finds the lease taken and stands by
    service.pump_once()
    assert service.standing_by is not None


def test_a_pump_renews_its_lease_without_a_write_every_pass(service):
    service.pump_once()
    before = service.lease.current()
    service.clock.advance(timedelta(seconds=service.settings.pump_lease_seconds / 6))
    service.pump_once()
    assert service.lease.current() == before
    service.clock.advance(timedelta(seconds=service.settings.pump_lease_seconds / 3))
    service.pump_once()
    current = service.lease.current()
    assert current is not None and before is not None and current[1] > before[1]


def test_a_cleanly_stopped_pump_hands_over_at_once(service, worker):
    service.pump_once()
    service.lease.release()
    worker.pump_once()
    assert worker.standing_by is None


def test_a_publish_through_the_api_reaches_a_separate_worker(client, worker, operator_headers):
    yaml = NURTURE.read_text(encoding="utf-8").replace("name:", "name: 新版", 1)
    client.put("/api/sops/new_customer_nurture", json={"yaml": yaml}, headers=operator_headers)
    client.post("/api/sops/new_customer_nurture/publish", json={"version": 1}, headers=operator_headers)
    assert worker.sync_library(force=True)
    assert worker.runtime.deps.library.sops["new_customer_nurture"].name.startswith("新版")


def test_a_pause_and_a_resume_reach_a_separate_worker(client, worker, operator_headers):
    client.post("/api/sops/new_customer_nurture/pause", headers=operator_headers)
    worker.sync_library(force=True)
    assert worker.runtime.deps.library.sops["new_customer_nurture"].enabled is False
    client.post("/api/sops/new_customer_nurture/resume", headers=operator_headers)
    worker.sync_library(force=True)
    assert worker.runtime.deps.library.sops["new_customer_nurture"].enabled is True


def test_an_unchanged_library_is_not_applied_again(worker):
    worker.sync_library(force=True)
    assert not worker.sync_library(force=True)
