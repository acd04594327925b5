"""Hybrid retrieval: lexical and dense rankings fused; indexes follow the SQL tables; vectors are cached."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from knowledge.db import upsert
from knowledge.embeddings import HashingEmbedder
from knowledge.retriever import Retriever
from knowledge.tables import Product


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().passages(texts)


@pytest.fixture
def engine(demo_engine: Engine) -> Engine:
    return demo_engine


def test_product_found_by_its_name(engine: Engine, tmp_path: Path) -> None:
    retriever = Retriever(engine, tmp_path / "chroma", HashingEmbedder())
    assert retriever.search("玻尿酸面霜多少钱", "products")[0].id == "SKU-CR01"


def test_shopper_synonym_reaches_the_catalogue_word(engine: Engine, tmp_path: Path) -> None:
    retriever = Retriever(engine, tmp_path / "chroma", HashingEmbedder())
    assert "SKU-BB01" in [h.id for h in retriever.search("宝宝洗澡用什么", "products")]


def test_sku_code_is_searchable(engine: Engine, tmp_path: Path) -> None:
    retriever = Retriever(engine, tmp_path / "chroma", HashingEmbedder())
    assert retriever.search("SKU-SE04 是什么", "products")[0].id == "SKU-SE04"


def test_policy_clause_found_for_a_return_question(engine: Engine, tmp_path: Path) -> None:
    retriever = Retriever(engine, tmp_path / "chroma", HashingEmbedder())
    assert retriever.search("买完就降价了能退差价吗", "policy")[0].title == "价格保护"


def test_unchanged_documents_are_not_embedded_again(engine: Engine, tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    Retriever(engine, tmp_path / "chroma", embedder).sync()
    first = embedder.embedded
    Retriever(engine, tmp_path / "chroma2", embedder).sync()  # fresh Chroma, same SQL cache
    assert first > 0 and embedder.embedded == first


def test_removed_product_is_no_longer_returned(engine: Engine, tmp_path: Path) -> None:
    retriever = Retriever(engine, tmp_path / "chroma", HashingEmbedder())
    retriever.sync()
    with engine.begin() as conn:
        upsert(conn, Product.__table__, [{"sku": "SKU-CR01", "name": "玻尿酸水润保湿面霜 50g", "category": "面霜",
                                          "price": 199, "stock": 0, "description": "", "usage": "",
                                          "suitable_for": "", "status": "off_sale"}])
    retriever.sync(["products"])
    assert "SKU-CR01" not in [h.id for h in retriever.search("玻尿酸面霜", "products", k=5)]
