"""The browser the report-rendering and console tests drive: Debian's Chromium through Playwright for Python.

Missing browser or package: the browser tests skip with one line, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import NoReturn

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true, so the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The path of the Chromium binary, once it is known that Playwright can drive it."""
    if importlib.util.find_spec("playwright") is None:
        _unavailable("playwright not installed: pip install -e '.[dev]'")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    return str(CHROMIUM)
