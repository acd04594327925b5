"""Versioned schema migrations (Alembic) for the production database, PostgreSQL.

``upgrade`` brings a database to the newest revision under an advisory lock, so processes starting together
migrate once. The embedded SQLite database keeps ``create_all`` plus added nullable columns (knowledge/db.py).
A new table or column in the models needs a revision: ``sopagent db revision -m "..."`` writes it from the
difference between the models and a database at head, and a test fails while models and migrations differ.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, text

SCRIPTS = Path(__file__).resolve().parent / "migrations"
_LOCK = 7_241_901  # pg_advisory_lock key: one migrating process at a time


def _config(connection: object, metadata: MetaData | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    if metadata is not None:
        config.attributes["metadata"] = metadata
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(_config(None)).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` (default the newest); a no-op when already there."""
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
        command.upgrade(_config(conn), revision)


def revision(engine: Engine, metadata: MetaData, message: str) -> None:
    """Write a new revision from the difference between ``metadata`` and the database (which must be at head)."""
    with engine.begin() as conn:
        command.revision(_config(conn, metadata), message=message, autogenerate=True)


def differences(engine: Engine, metadata: MetaData) -> list[object]:
    """What the models have that the migrated database lacks (or the reverse); empty when they agree."""
    from alembic.autogenerate import compare_metadata

    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata))
