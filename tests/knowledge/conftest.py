"""Fixtures shared by the knowledge tests."""

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from knowledge.db import init_db, make_engine
from knowledge.importer import import_demo_shop


@pytest.fixture
def demo_engine(tmp_path: Path) -> Engine:
    """A SQLite database holding the demo shop's catalogue, FAQ, policy and promotions."""
    engine = make_engine(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    init_db(engine)
    import_demo_shop(engine)
    return engine
