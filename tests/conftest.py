"""Shared fixtures: an isolated embedded runtime on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.runtime import Runtime
from knowledge.clock import SimClock
from knowledge.settings import Settings

MONDAY_15_SHANGHAI = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return Runtime.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0), clock=SimClock(MONDAY_15_SHANGHAI))
