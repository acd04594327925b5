"""Profile questions the catalogue makes worth asking: a skin question is noise in an appliance shop."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from knowledge.db import init_db, make_engine, upsert
from knowledge.tables import Product
from sop_graphs.loader import load_catalog, load_library
from sop_graphs.relevance import asks_only_unused, unused_slots

LIBRARY = Path(__file__).resolve().parents[2] / "sop_graphs" / "library"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    init_db(engine)
    return engine


def _stock(engine: Engine, *products: dict) -> None:
    with engine.begin() as conn:
        upsert(conn, Product.__table__, [{"sku": f"S{i}", "price": 99, "category": "", "description": "",
                                          "suitable_for": "", "specs": {}, "aliases": [], "contraindications": [],
                                          **p} for i, p in enumerate(products)])


def test_skin_facts_are_unused_by_an_appliance_catalogue(engine: Engine) -> None:
    catalog, _ = load_catalog(LIBRARY)
    _stock(engine, {"name": "空气炸锅 5L", "suitable_for": "2-4 人家庭"}, {"name": "电水壶 1.7L"})
    with engine.connect() as conn:
        assert {"skin_type", "concern"} <= unused_slots(conn, catalog.profile)


def test_a_product_for_dry_skin_makes_the_skin_question_worth_asking(engine: Engine) -> None:
    catalog, _ = load_catalog(LIBRARY)
    _stock(engine, {"name": "保湿面霜", "suitable_for": "干皮、混合皮"})
    with engine.connect() as conn:
        assert "skin_type" not in unused_slots(conn, catalog.profile)


def test_without_a_catalogue_every_question_is_asked(engine: Engine) -> None:
    catalog, _ = load_catalog(LIBRARY)
    with engine.connect() as conn:
        assert unused_slots(conn, catalog.profile) == frozenset()


def test_an_sop_that_only_asks_unused_facts_is_not_started() -> None:
    library, _ = load_library(sorted((LIBRARY / "sops").glob("*.yaml")), LIBRARY)
    assert asks_only_unused(library.sops["skin_profile_tagging"], frozenset({"skin_type", "concern"}))
    assert not asks_only_unused(library.sops["new_customer_nurture"], frozenset({"skin_type", "concern"}))
