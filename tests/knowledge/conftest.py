"""Fixtures shared by the knowledge tests."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

import agent.tables  # noqa: F401 — registers the tables init_db creates
import sop_graphs.tables  # noqa: F401
from knowledge.clock import as_utc
from knowledge.db import init_db, make_engine
from knowledge.importer import import_demo_shop
from knowledge.tables import Customer, CustomerTag, ProfileFact
from sop_graphs.tables import SopRun

SHOP_T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture
def demo_engine(tmp_path: Path) -> Engine:
    """A SQLite database holding the demo shop's catalogue, FAQ, policy and promotions."""
    engine = make_engine(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    init_db(engine)
    import_demo_shop(engine)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def shop_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """Customers c1 (小王: tag 干皮, fact skin_type) and c2 (小李), and run r1 of c1; on SQLite and PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'shop.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("postgres_database")()
    made = make_engine(url)
    init_db(made)
    with made.begin() as conn:
        conn.execute(Customer.__table__.insert(), [
            {"id": cid, "name": name, "owner": "", "added_at": as_utc(SHOP_T0), "stage": "new", "attributes": {}}
            for cid, name in (("c1", "小王"), ("c2", "小李"))])
        conn.execute(CustomerTag.__table__.insert(), [
            {"customer_id": "c1", "tag": "干皮", "source": "test", "created_at": as_utc(SHOP_T0)}])
        conn.execute(ProfileFact.__table__.insert(), [
            {"customer_id": "c1", "key": "skin_type", "value": "干皮", "source": "t", "method": "answer",
             "confidence": 1.0, "at": as_utc(SHOP_T0), "current": True}])
        conn.execute(SopRun.__table__.insert(), [
            {"id": "r1", "sop_id": "s", "sop_version": 1, "family": "f", "customer_id": "c1", "status": "active",
             "trigger": "t", "started_at": as_utc(SHOP_T0)}])
    yield made
    made.dispose()
