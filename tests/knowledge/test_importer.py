"""Importer: shop exports with their own (Chinese) field names load without code; bad files load nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from knowledge.db import init_db, make_engine
from knowledge.importer import ImportFormatError, import_demo_shop, import_file
from knowledge.tables import Document, Product, Shipment, ShopOrder

MAPPING = """
fields: {商品编码: sku, 商品名称: name, 售价: price, 库存: stock, 状态: status}
values: {status: {在售: on_sale, 下架: off_sale}}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    init_db(engine)
    return engine


def count(engine: Engine, table: type) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()


def test_csv_with_chinese_headers_loads_through_a_mapping_file(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "p.csv").write_text("商品编码,商品名称,售价,库存,状态\nA1,保湿霜,99,5,在售\nA2,洁面,59,0,下架\n",
                                    encoding="utf-8")
    report = import_file(engine, tmp_path / "p.csv", "products", tmp_path / "m.yaml")
    assert report.ok and report.written == 2
    with engine.connect() as conn:
        assert conn.execute(select(Product.status).where(Product.sku == "A2")).scalar_one() == "off_sale"


def test_one_bad_row_is_reported_by_number_and_nothing_is_written(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "p.csv").write_text("商品编码,商品名称,售价,库存\nA1,保湿霜,99,5\nA2,洁面,免费,1\nA3,,10,1\n",
                                    encoding="utf-8")
    report = import_file(engine, tmp_path / "p.csv", "products", tmp_path / "m.yaml")
    assert not report.ok
    assert {(e.row, e.field) for e in report.errors} == {(2, "price"), (3, "name")}
    assert count(engine, Product) == 0


def test_reimport_updates_rows_in_place(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"sku": "A1", "name": "霜", "price": 99}) + "\n", encoding="utf-8")
    import_file(engine, path, "products")
    path.write_text(json.dumps({"sku": "A1", "name": "霜", "price": 89}) + "\n", encoding="utf-8")
    import_file(engine, path, "products")
    with engine.connect() as conn:
        assert conn.execute(select(Product.price)).scalars().all() == [89]


def test_malformed_json_is_a_clear_error_with_the_line(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text('{"order_no": "1"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"o.jsonl:2"):
        import_file(engine, path, "orders")


def test_markdown_sections_become_one_document_each(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "policy.md"
    path.write_text("# 政策\n\n## 七天无理由\n未拆封可退。\n\n## 价保\n7 天内降价退差价。\n", encoding="utf-8")
    assert import_file(engine, path, "policy").written == 2
    with engine.connect() as conn:
        assert conn.execute(select(Document.title).order_by(Document.id)).scalars().all() == ["七天无理由", "价保"]


def test_demo_shop_has_every_shipment_state_and_enough_data(engine: Engine) -> None:
    import_demo_shop(engine)
    with engine.connect() as conn:
        states = set(conn.execute(select(Shipment.status)).scalars())
    assert {"picked_up", "in_transit", "out_for_delivery", "delivered", "exception", "returned"} <= states
    assert count(engine, Product) >= 40 and count(engine, ShopOrder) >= 80
