"""Shared fixtures: an isolated embedded runtime on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.runtime import Runtime
from knowledge.clock import SimClock
from knowledge.settings import Settings
from tests.browser import chromium_executable  # noqa: F401  (a shared fixture)
from tests.postgres import postgres_database  # noqa: F401  (a shared fixture)

MONDAY_15_SHANGHAI = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return Runtime.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0), clock=SimClock(MONDAY_15_SHANGHAI))


_EVAL_FIGURES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    if report.when == "call" and "eval_wall_seconds" in props:
        _EVAL_FIGURES.append(f"offline eval suite: {props.get('eval_summary')} in {props['eval_wall_seconds']} s")


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001  (pytest hook)
    for line in _EVAL_FIGURES:
        terminalreporter.write_line(line)
