"""Importer: shop exports with their own (Chinese) field names load without code; bad files load nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from knowledge.db import init_db, make_engine
from knowledge.importer import ImportFormatError, ImportReport, import_demo_shop, import_file
from knowledge.statuses import status_label
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
    assert {(e.row, e.field) for e in report.errors} == {(3, "price"), (4, "name")}  # Excel rows: header is 1
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


# -- real shop exports: the appliance shop fixture -------------------------------------------------

APPLIANCE = Path(__file__).resolve().parent / "data" / "appliance_shop"
APPLIANCE_FILES = (("products.json", "products", "products.mapping.yaml"),
                   ("orders.json", "orders", "orders.mapping.yaml"),
                   ("shipments.csv", "logistics", "shipments.mapping.yaml"))


def import_appliance(engine: Engine, name: str) -> ImportReport:
    file, kind, mapping = next(f for f in APPLIANCE_FILES if f[0] == name)
    report = import_file(engine, APPLIANCE / file, kind, APPLIANCE / mapping)
    assert report.ok, report.errors
    return report


def product(engine: Engine, sku: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Product.__table__).where(Product.sku == sku)).mappings().one())


def test_nested_products_import_with_model_url_specs_and_category(engine: Engine) -> None:
    import_appliance(engine, "products.json")
    rw7 = product(engine, "100012345682")
    assert (rw7["model"], rw7["category"], rw7["price"]) == ("RW7", "净水器", 1899)
    assert rw7["url"] == "https://item.example.com/100012345682.html"
    assert rw7["specs"]["通量"] == "700G" and rw7["specs"]["质保"] == "整机3年" and rw7["specs"]["品牌"] == "禾暖"
    assert product(engine, "100012345683")["model"] == "RW9"


def test_unmapped_specs_skip_ignored_and_mapped_sources(engine: Engine) -> None:
    import_appliance(engine, "products.json")
    specs = product(engine, "100012345687")["specs"]
    assert specs["防干烧"] == "是"
    assert not {"cat_id", "cat_name", "shop_id", "sales_30d", "modified", "title", "keywords"} & set(specs)


def test_numeric_source_ids_are_read_as_text(engine: Engine) -> None:
    import_appliance(engine, "products.json")
    assert product(engine, "100012345680")["model"] == "RC40"


def test_missing_stock_is_unknown_not_zero(engine: Engine) -> None:
    import_appliance(engine, "products.json")
    assert product(engine, "100012345678")["stock"] is None  # no stock field in the export
    assert product(engine, "100012345690")["stock"] is None  # "stock": null
    assert product(engine, "100012345681")["stock"] == 0  # really out of stock
    assert product(engine, "100012345687")["stock"] == 53


def test_empty_stock_cell_is_unknown_not_zero(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "p.csv").write_text("商品编码,商品名称,售价,库存\nA1,保湿霜,99,\n", encoding="utf-8")
    assert import_file(engine, tmp_path / "p.csv", "products", tmp_path / "m.yaml").ok
    assert product(engine, "A1")["stock"] is None


def test_delimited_aliases_and_contraindications_become_lists(engine: Engine) -> None:
    import_appliance(engine, "products.json")
    assert product(engine, "100012345691")["contraindications"] == ["孕期", "心脏起搏器佩戴者", "颈部皮肤破损者"]
    assert product(engine, "100012345692")["contraindications"] == ["孕期", "糖尿病足", "下肢静脉血栓患者"]
    assert product(engine, "100012345688")["aliases"] == ["恒温壶", "冲奶壶", "调奶器"]


def test_csv_attribute_columns_become_labelled_specs(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("fields: {商品编码: sku, 商品名称: name, 售价: price}\n"
                                     "specs: {power_w: 功率}\nunmapped: specs\n", encoding="utf-8")
    (tmp_path / "p.csv").write_text("商品编码,商品名称,售价,power_w,尺寸,赠品\nK1,电水壶,129,1800W,20×15×25cm,\n",
                                    encoding="utf-8")
    assert import_file(engine, tmp_path / "p.csv", "products", tmp_path / "m.yaml").ok
    assert product(engine, "K1")["specs"] == {"功率": "1800W", "尺寸": "20×15×25cm"}


def test_jsonl_rows_map_through_nested_and_list_paths(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("fields:\n  data.goods_id: sku\n  data.title: name\n  data.price.sale: price\n"
                                     "  data.tags[].name: aliases\n  data.skus[0].stock: stock\n", encoding="utf-8")
    line = {"data": {"goods_id": "G1", "title": "电热水壶", "price": {"sale": 129, "list": 199},
                     "tags": [{"name": "烧水壶"}, {"name": "开水壶"}], "skus": [{"stock": 7}, {"stock": 3}]}}
    (tmp_path / "p.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    assert import_file(engine, tmp_path / "p.jsonl", "products", tmp_path / "m.yaml").ok
    row = product(engine, "G1")
    assert (row["name"], row["price"], row["aliases"], row["stock"]) == ("电热水壶", 129, ["烧水壶", "开水壶"], 7)


def test_nested_order_items_map_onto_order_items(engine: Engine) -> None:
    import_appliance(engine, "orders.json")
    with engine.connect() as conn:
        order = conn.execute(select(ShopOrder.__table__).where(ShopOrder.order_no == "3521120400000002")
                             ).mappings().one()
    assert order["customer_id"] == "wmHn2aCQAAp8Qe2" and order["amount"] == 2098
    assert order["address"].startswith("广东省深圳市")
    assert [(i["sku"], i["qty"], i["price"]) for i in order["items"]] == [("100012345682", 1, 1899),
                                                                         ("100012345684", 1, 199)]


def test_reused_tracking_number_keeps_both_orders_shipments(engine: Engine) -> None:
    import_appliance(engine, "shipments.csv")
    with engine.connect() as conn:
        rows = conn.execute(select(Shipment.id, Shipment.order_no).where(Shipment.tracking_no == "SF1488230571904")
                            .order_by(Shipment.id)).all()
    assert [tuple(r) for r in rows] == [("3521120400000004/SF1488230571904", "3521120400000004"),
                                        ("3521120400000005/SF1488230571904", "3521120400000005")]


def test_shipment_trace_in_a_csv_cell_maps_onto_events(engine: Engine) -> None:
    import_appliance(engine, "shipments.csv")
    with engine.connect() as conn:
        events = conn.execute(select(Shipment.events).where(Shipment.id == "3521120400000012/YT7730011267788")
                              ).scalar_one()
    assert events[-1] == {"at": "2026-11-22 15:20", "text": "地址不详，派件失败，快递员将联系收件人", "location": "青岛市"}


def test_reimporting_shipments_is_idempotent(engine: Engine) -> None:
    import_appliance(engine, "shipments.csv")
    with engine.connect() as conn:
        before = conn.execute(select(Shipment.id).order_by(Shipment.id)).scalars().all()
    import_appliance(engine, "shipments.csv")
    with engine.connect() as conn:
        assert conn.execute(select(Shipment.id).order_by(Shipment.id)).scalars().all() == before
    assert len(before) == 12


def test_custom_order_status_imports_with_its_label(engine: Engine) -> None:
    import_appliance(engine, "orders.json")
    with engine.connect() as conn:
        status = conn.execute(select(ShopOrder.status).where(ShopOrder.order_no == "3521120400000009")).scalar_one()
        assert status == "returned"
        assert status_label(conn, "order", "returned") == "已退货"
        assert status_label(conn, "order", "processing") == "处理中"


def test_declared_label_translates_without_a_values_entry(engine: Engine) -> None:
    import_appliance(engine, "shipments.csv")  # 已拦截 is only declared under statuses
    with engine.connect() as conn:
        assert conn.execute(select(Shipment.status).where(Shipment.order_no == "3521120400000010")
                            ).scalar_one() == "intercepted"
        assert status_label(conn, "shipment", "intercepted") == "已拦截"


def test_status_label_falls_back_to_canonical_chinese_per_kind(engine: Engine) -> None:
    import_appliance(engine, "orders.json")  # declares order status `returned`: 已退货
    with engine.connect() as conn:
        assert status_label(conn, "order", "paid") == "已付款，待发货"
        assert status_label(conn, "shipment", "returned") == "已退回"
        assert status_label(conn, "shipment", "no_such_status") == "no_such_status"


def test_unknown_status_is_a_row_error_with_its_row_number(engine: Engine, tmp_path: Path) -> None:
    rows = [{"order_no": f"O{i}", "customer_id": "c1", "status": s, "amount": 1, "created_at": "2026-11-01 10:00"}
            for i, s in enumerate(["paid", "待审核", "shipped"], 1)]
    (tmp_path / "o.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                      encoding="utf-8")
    report = import_file(engine, tmp_path / "o.jsonl", "orders")
    assert [(e.row, e.field) for e in report.errors] == [(2, "status")]
    assert "待审核" in report.errors[0].message
    assert count(engine, ShopOrder) == 0


@pytest.mark.parametrize("name", [f[0] for f in APPLIANCE_FILES])
def test_report_counts_equal_rows_stored(engine: Engine, name: str) -> None:
    report = import_appliance(engine, name)
    table = {"products": Product, "orders": ShopOrder, "logistics": Shipment}[report.kind]
    assert report.rows == report.written == count(engine, table)


def test_demo_shop_reports_equal_rows_stored(engine: Engine) -> None:
    reports = {r.kind: r for r in import_demo_shop(engine)}
    assert reports["products"].written == count(engine, Product)
    assert reports["orders"].written == count(engine, ShopOrder)
    assert reports["logistics"].written == count(engine, Shipment)


def test_repeated_key_in_one_file_is_a_warning_and_the_later_row_wins(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "p.csv").write_text("商品编码,商品名称,售价\nA1,保湿霜,99\nA2,洁面,59\nA1,保湿霜,89\n",
                                    encoding="utf-8")
    report = import_file(engine, tmp_path / "p.csv", "products", tmp_path / "m.yaml")
    assert report.ok and (report.rows, report.written) == (3, 2)
    assert [(d.row, d.earlier_row, d.key) for d in report.duplicates] == [(4, 2, "A1")]  # Excel rows
    assert count(engine, Product) == 2 and product(engine, "A1")["price"] == 89


@pytest.mark.parametrize(("mapping", "message"), [
    ("fields: {a: [unclosed\n", r"m\.yaml:\d+: invalid YAML"),
    ("- sku\n- name\n", "a mapping file is a YAML object"),
    ("feilds: {a: sku}\n", r"invalid mapping: feilds"),
    ("fields: {'goods..id': sku}\n", r"bad source path 'goods\.\.id'"),
    ("fields: {'goods[x]': sku}\n", r"bad source path 'goods\[x\]'"),
    ("fields: {title: nmae}\n", r"products has no field 'nmae'"),
    ("statuses: {processing: 处理中}\n", "statuses: applies to orders and logistics only"),
    ("statuses: {处理中: processing}\n", "lower_snake_case"),
    ("records: data.lst\n", r"records path 'data\.lst' not found"),
    ("records: code\n", r"records path 'code' is a int, not a list"),
])
def test_bad_mapping_is_a_format_error_with_a_clear_message(engine: Engine, tmp_path: Path, mapping: str,
                                                             message: str) -> None:
    (tmp_path / "m.yaml").write_text(mapping, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=message):
        import_file(engine, APPLIANCE / "products.json", "products", tmp_path / "m.yaml")


def test_missing_mapping_file_is_a_format_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="cannot read the mapping"):
        import_file(engine, APPLIANCE / "products.json", "products", tmp_path / "absent.yaml")


def test_json_without_a_list_of_rows_is_a_format_error(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"code": 0, "result": {"goods": []}}', encoding="utf-8")
    with pytest.raises(ImportFormatError, match="no list of rows found"):
        import_file(engine, tmp_path / "p.json", "products")


def test_mapped_path_absent_from_a_row_names_the_path(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("fields: {goods_id: sku, data.titel: name}\n", encoding="utf-8")
    report = import_file(engine, APPLIANCE / "products.json", "products", tmp_path / "m.yaml")
    assert report.errors[0].row == 1 and report.errors[0].field == "name"
    assert "data.titel" in report.errors[0].message


def test_quoted_multiline_csv_cell_and_padded_header_stay_one_row(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("fields: {商品编码: sku, 商品名称: name, 售价: price, 商品描述: description}\n",
                                    encoding="utf-8")
    (tmp_path / "p.csv").write_text(' 商品编码 ,商品名称,售价,商品描述\nA1,电水壶,129,"1.7L 大容量\n304 不锈钢"\n',
                                    encoding="utf-8")
    report = import_file(engine, tmp_path / "p.csv", "products", tmp_path / "m.yaml")
    assert report.ok and report.rows == 1
    assert product(engine, "A1")["description"] == "1.7L 大容量\n304 不锈钢"


# -- bounded input: mappings and manifests go through the one bounded YAML loader ----------------------

BOMB = "fields: &a [x, x, x, x, x, x, x, x, x]\nvalues: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"


@pytest.mark.parametrize(("mapping", "message"), [
    (BOMB, r"m\.yaml:1: invalid YAML: anchors and aliases .* are not allowed"),
    ("fields: {a: sku}\nvalues: &v {status: *v}\n", r"m\.yaml:2: invalid YAML: anchors and aliases"),
    ("fields: " + "[" * 500 + "]" * 500 + "\n", r"m\.yaml:1: invalid YAML: nested deeper than \d+ levels"),
    ("fields: {a: sku}\nrecords: 99999999999999999999999\n", r"m\.yaml:2: invalid YAML: integer out of range"),
])
def test_mapping_yaml_alias_bomb_and_deep_nesting_are_refused_with_their_line(engine: Engine, tmp_path: Path,
                                                                             mapping: str, message: str) -> None:
    (tmp_path / "m.yaml").write_text(mapping, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=message):
        import_file(engine, APPLIANCE / "products.json", "products", tmp_path / "m.yaml")
    assert count(engine, Product) == 0


def test_mapping_that_is_not_utf8_is_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_bytes("fields: {商品: sku}\n".encode("gbk"))
    with pytest.raises(ImportFormatError, match=r"m\.yaml: cannot read the mapping: not UTF-8 text"):
        import_file(engine, APPLIANCE / "products.json", "products", tmp_path / "m.yaml")


@pytest.mark.parametrize("manifest", ["files: &f [{file: a.csv, kind: products}]\nmore: *f\n",
                                      "files: {file: a.csv}\n", "files:\n  - {file: a.csv}\n", "- a.csv\n"])
def test_bad_shop_manifest_is_a_format_error(tmp_path: Path, manifest: str) -> None:
    from knowledge.importer import shop_files

    (tmp_path / "shop.yaml").write_text(manifest, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"shop\.yaml"):
        shop_files(tmp_path)


def test_json_nested_past_the_interpreter_limit_is_a_format_error(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"p\.json: unreadable JSON: nested too deeply"):
        import_file(engine, tmp_path / "p.json", "products")


def test_lone_surrogate_in_a_row_is_a_row_error_and_nothing_is_imported(engine: Engine, tmp_path: Path) -> None:
    rows = [{"sku": "A1", "name": "保湿霜", "price": 99}, {"sku": "A2", "name": "洁面", "price": 59,
                                                           "aliases": ["\udfff"]}]
    (tmp_path / "p.json").write_text(json.dumps(rows), encoding="utf-8")  # ascii: the escape "\udfff"
    report = import_file(engine, tmp_path / "p.json", "products")
    assert not report.ok and [(e.row, e.field) for e in report.errors] == [(2, "aliases")]
    assert "invalid Unicode" in report.errors[0].message and count(engine, Product) == 0


def test_integer_beyond_64_bits_is_a_row_error(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps([{"sku": "A1", "name": "保湿霜", "price": 99, "stock": 2**70}]),
                                     encoding="utf-8")
    report = import_file(engine, tmp_path / "p.json", "products")
    assert [(e.row, e.field) for e in report.errors] == [(1, "stock")] and count(engine, Product) == 0


def test_an_order_import_reports_new_orders_and_status_changes_only(engine: Engine, tmp_path: Path) -> None:
    def orders(*rows: tuple[str, str]) -> Path:
        path = tmp_path / "o.jsonl"
        path.write_text("\n".join(json.dumps({"order_no": no, "customer_id": "c1", "status": status, "amount": 10,
                                              "created_at": "2026-11-01 12:00:00"}) for no, status in rows),
                        encoding="utf-8")
        return path

    first = import_file(engine, orders(("A", "paid"), ("B", "paid")), "orders")
    assert [(c.order_no, c.before, c.after) for c in first.changes] == [("A", None, "paid"), ("B", None, "paid")]
    second = import_file(engine, orders(("A", "paid"), ("B", "shipped")), "orders")
    assert [(c.order_no, c.before, c.after) for c in second.changes] == [("B", "paid", "shipped")]
