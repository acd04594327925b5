"""Real PostgreSQL for the tests that need it: a fresh database per use, dropped afterwards.

``SOPAGENT_TEST_POSTGRES_URL`` names a server and a role that may create databases (``.ci/run`` starts one);
without it those tests skip with one line, except under ``CI=true`` where they fail."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV = "SOPAGENT_TEST_POSTGRES_URL"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true, so the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases: each call returns the SQLAlchemy URL of a new one."""
    admin_url = os.environ.get(ENV)
    if not admin_url:
        _unavailable(f"PostgreSQL not configured: set {ENV} (e.g. postgresql+psycopg://user:pw@127.0.0.1/postgres)")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 — any connection failure means the server is not there
        admin.dispose()
        _unavailable(f"PostgreSQL at {ENV} not reachable: {type(exc).__name__}")
    made: list[str] = []

    def make() -> str:
        name = f"sopagent_test_{secrets.token_hex(6)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)  # type: ignore[arg-type]

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
