"""Spreadsheets as Chinese operators keep them: .xlsx workbooks and GBK/GB18030 CSV (Excel's 另存为 CSV on Chinese
Windows), with every row error at the row number Excel or WPS shows (header row 1, first data row 2)."""

from __future__ import annotations

import base64
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from knowledge import importer
from knowledge.db import init_db, make_engine
from knowledge.importer import ImportFormatError, import_file
from knowledge.tables import Product, ShopOrder

HEADER = ["商品编码", "商品名称", "价格", "库存", "状态"]
PRODUCTS_MAPPING = """
fields: {商品编码: sku, 商品名称: name, 价格: price, 库存: stock, 状态: status}
values: {status: {在售: on_sale, 下架: off_sale}}
"""
ORDERS_MAPPING = """
fields: {订单号: order_no, 手机号: customer_id, 订单状态: status, 实付金额: amount, 下单时间: created_at}
values: {status: {已付款: paid, 已发货: shipped}}
"""
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    init_db(engine)
    return engine


def workbook(path: Path, rows: list[list[Any]], title: str = "商品", extra_sheets: tuple[str, ...] = ()) -> Path:
    """An .xlsx file as a shop's export looks: ``[]`` leaves a sheet row empty."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for name in extra_sheets:
        book.create_sheet(name).append(["别的表"])
    book.save(path)
    return path


def mapping(tmp_path: Path, text: str = PRODUCTS_MAPPING) -> Path:
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "m.yaml"


def products(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["sku"]: dict(r) for r in conn.execute(select(Product.__table__)).mappings()}


def count(engine: Engine, table: type) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()


# -- .xlsx ------------------------------------------------------------------------------------------------

def test_xlsx_products_import_through_a_chinese_header_mapping(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "商品.xlsx", [HEADER, ["A1", "保湿霜", 119, 5, "在售"], ["A2", "洁面乳", 59.9, 0, "下架"]])
    report = import_file(engine, path, "products", mapping(tmp_path))
    assert report.ok and (report.rows, report.written, report.sheet) == (2, 2, "商品")
    rows = products(engine)
    assert (rows["A1"]["name"], rows["A1"]["price"], rows["A1"]["stock"]) == ("保湿霜", 119, 5)
    assert (rows["A2"]["price"], rows["A2"]["stock"], rows["A2"]["status"]) == (59.9, 0, "off_sale")


def test_bad_xlsx_row_is_reported_at_the_row_number_excel_shows(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "p.xlsx", [HEADER, ["A1", "保湿霜", 119, 5], ["A2", "洁面乳", 59, 1],
                                          ["A3", "精华", "面议", 2]])
    report = import_file(engine, path, "products", mapping(tmp_path))
    assert [(e.row, e.field) for e in report.errors] == [(4, "price")]
    assert count(engine, Product) == 0


def test_empty_rows_in_the_middle_of_a_sheet_keep_its_row_numbers(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "p.xlsx", [HEADER, ["A1", "保湿霜", 119], [], [None, None, None],
                                          ["A2", "", 59]])
    report = import_file(engine, path, "products", mapping(tmp_path))
    assert report.rows == 2 and [(e.row, e.field) for e in report.errors] == [(5, "name")]


def test_header_below_empty_rows_keeps_the_sheet_numbering(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "p.xlsx", [[], HEADER, ["A1", "保湿霜", -1]])
    report = import_file(engine, path, "products", mapping(tmp_path))
    assert [(e.row, e.field) for e in report.errors] == [(3, "price")]


def test_order_and_phone_numbers_stored_as_numbers_import_as_their_digits(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "o.xlsx", [["订单号", "手机号", "订单状态", "实付金额", "下单时间"],
                                          [3521120400000002.0, 13800138000.0, "已付款", 119.0, "2026-11-01 10:30"],
                                          [352112040000003, 13900139000, "已发货", 59.5, "2026-11-02 09:00"]])
    assert import_file(engine, path, "orders", mapping(tmp_path, ORDERS_MAPPING)).ok
    with engine.connect() as conn:
        rows = conn.execute(select(ShopOrder.order_no, ShopOrder.customer_id, ShopOrder.amount)).all()
    assert {tuple(r) for r in rows} == {("3521120400000002", "13800138000", 119),
                                        ("352112040000003", "13900139000", 59.5)}


def test_fractions_read_as_the_fifteen_digits_excel_shows(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "p.xlsx", [["sku", "name", "price", "model"], ["A1", "保湿霜", 0.1 + 0.2, 1.1 * 3]])
    assert import_file(engine, path, "products").ok
    assert (products(engine)["A1"]["price"], products(engine)["A1"]["model"]) == (0.3, "3.3")


def test_date_cells_import_as_shop_local_order_times(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "o.xlsx", [["订单号", "手机号", "订单状态", "实付金额", "下单时间"],
                                          ["O1", "c1", "已付款", 119, datetime(2026, 11, 1, 10, 30)],
                                          ["O2", "c2", "已付款", 59, date(2026, 11, 2)]])
    assert import_file(engine, path, "orders", mapping(tmp_path, ORDERS_MAPPING)).ok
    with engine.connect() as conn:
        times = dict(conn.execute(select(ShopOrder.order_no, ShopOrder.created_at)).all())
    assert times["O1"].replace(tzinfo=None) == datetime(2026, 11, 1, 2, 30)  # 10:30 in Shanghai, stored as UTC
    assert times["O2"].replace(tzinfo=None) == datetime(2026, 11, 1, 16, 0)


def test_named_worksheet_is_read_instead_of_the_first(engine: Engine, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active.append(["本表为导出说明"])
    sheet = book.create_sheet("商品")
    for row in [["sku", "name", "price"], ["B1", "面膜", 39]]:
        sheet.append(row)
    book.save(tmp_path / "p.xlsx")
    report = import_file(engine, tmp_path / "p.xlsx", "products", sheet="商品")
    assert report.ok and report.sheet == "商品" and set(products(engine)) == {"B1"}


def test_unknown_worksheet_name_lists_the_sheets(engine: Engine, tmp_path: Path) -> None:
    path = workbook(tmp_path / "p.xlsx", [["sku", "name", "price"]], extra_sheets=("库存",))
    with pytest.raises(ImportFormatError, match=r"no worksheet '订单' \(worksheets: '商品', '库存'\)"):
        import_file(engine, path, "products", sheet="订单")


def _plain_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "不是表格")
    return path


def _truncated(path: Path) -> Path:
    data = workbook(path, [HEADER, ["A1", "保湿霜", 119]]).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _ole2(path: Path) -> Path:
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 an old .xls, or a password-protected workbook")
    return path


@pytest.mark.parametrize(("make", "message"), [
    (_ole2, "not a zip archive"),
    (_truncated, "not a zip archive"),
    (_plain_zip, "not a readable .xlsx workbook"),
], ids=["not-a-zip", "truncated", "zip-without-a-workbook"])
def test_corrupt_xlsx_is_a_clear_format_error(engine: Engine, tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path / "p.xlsx")
    with pytest.raises(ImportFormatError, match=message):
        import_file(engine, path, "products")
    assert count(engine, Product) == 0


@pytest.mark.parametrize(("limit", "value", "rows", "message"), [
    ("XLSX_MAX_ROWS", 2, [HEADER] + [[f"A{i}", "霜", 9] for i in range(3)], "more than 2 rows"),
    ("XLSX_MAX_COLUMNS", 4, [HEADER], "row 1 has 5 columns, over the limit of 4"),
    ("XLSX_MAX_BYTES", 1024, [HEADER], "over the limit of 1024 bytes"),
    ("XLSX_MAX_UNZIPPED_BYTES", 2048, [HEADER], "unpacks to .* over the limit of 2048 bytes"),
])
def test_oversized_workbook_is_refused_before_anything_is_imported(engine: Engine, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, limit: str,
                                                                   value: int, rows: list[list[Any]],
                                                                   message: str) -> None:
    monkeypatch.setattr(importer, limit, value)
    with pytest.raises(ImportFormatError, match=message):
        import_file(engine, workbook(tmp_path / "p.xlsx", rows), "products", mapping(tmp_path))
    assert count(engine, Product) == 0


def test_old_xls_file_is_told_to_save_as_xlsx(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "p.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ImportFormatError, match=r"unsupported file type '\.xls' \(an old \.xls .*save it as \.xlsx\)"):
        import_file(engine, tmp_path / "p.xls", "products")


# -- CSV encodings and row numbers --------------------------------------------------------------------

GBK_CSV = "商品编码,商品名称,价格,库存,状态\nA1,保湿霜,99,5,在售\nA2,氨基酸洁面乳,59,0,下架\n"


def test_gbk_csv_with_chinese_headers_imports(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(GBK_CSV.encode("gbk"))
    report = import_file(engine, tmp_path / "p.csv", "products", mapping(tmp_path))
    assert report.ok and report.written == 2 and report.encoding == "gb18030"
    assert products(engine)["A2"]["name"] == "氨基酸洁面乳" and products(engine)["A2"]["status"] == "off_sale"


def test_characters_only_gb18030_has_survive(engine: Engine, tmp_path: Path) -> None:
    text = "商品编码,商品名称,价格\nA1,𠮷野家联名杯,39\nA2,䶮字纪念书签,9\n"  # neither character is in GBK
    (tmp_path / "p.csv").write_bytes(text.encode("gb18030"))
    assert import_file(engine, tmp_path / "p.csv", "products", mapping(tmp_path)).ok
    assert {s: r["name"] for s, r in products(engine).items()} == {"A1": "𠮷野家联名杯", "A2": "䶮字纪念书签"}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_utf8_csv_is_still_read_as_utf8(engine: Engine, tmp_path: Path, encoding: str) -> None:
    (tmp_path / "p.csv").write_text(GBK_CSV.replace("氨基酸洁面乳", "𠮷野家联名杯"), encoding=encoding)
    report = import_file(engine, tmp_path / "p.csv", "products", mapping(tmp_path))
    assert report.ok and report.encoding == "utf-8" and products(engine)["A2"]["name"] == "𠮷野家联名杯"


def test_mostly_utf8_csv_with_a_gbk_row_is_refused_not_guessed(engine: Engine, tmp_path: Path) -> None:
    utf8 = "商品编码,商品名称,价格\n" + "".join(f"A{i},补水保湿面霜{i},99\n" for i in range(5))
    (tmp_path / "p.csv").write_bytes(utf8.encode("utf-8") + "B1,洁面乳,59\n".encode("gbk"))
    with pytest.raises(ImportFormatError, match=r"p\.csv:7: the file is UTF-8 text with bytes that are not UTF-8"):
        import_file(engine, tmp_path / "p.csv", "products", mapping(tmp_path))


def test_undecodable_csv_names_the_encodings_tried(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(b"sku,name,price\nA1,\xff\xfe,9\n")
    with pytest.raises(ImportFormatError, match=r"p\.csv:2: .*neither UTF-8 nor GBK/GB18030 \(tried utf-8, gb18030"):
        import_file(engine, tmp_path / "p.csv", "products")


def test_csv_blank_and_empty_rows_keep_the_row_numbers_excel_shows(engine: Engine, tmp_path: Path) -> None:
    text = "商品编码,商品名称,价格\nA1,保湿霜,99\n\n,,\nA2,洁面乳,免费\n"  # Excel writes an empty row as ",,"
    (tmp_path / "p.csv").write_bytes(text.encode("gbk"))
    report = import_file(engine, tmp_path / "p.csv", "products", mapping(tmp_path))
    assert report.rows == 2 and [(e.row, e.field) for e in report.errors] == [(5, "price")]


def test_csv_cell_over_several_lines_is_one_spreadsheet_row(engine: Engine, tmp_path: Path) -> None:
    text = '商品编码,商品名称,价格\nA1,"保湿霜\n50ml",99\nA2,洁面乳,免费\n'
    (tmp_path / "p.csv").write_text(text, encoding="utf-8")
    report = import_file(engine, tmp_path / "p.csv", "products", mapping(tmp_path))
    assert [(e.row, e.field) for e in report.errors] == [(3, "price")]


# -- entry points: the operator API and the CLI --------------------------------------------------------

@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    from api.app import create_app
    from api.service import Service
    from api.wecom.fake import FakeWeCom
    from knowledge.clock import SimClock
    from tests.api.conftest import NOW, wecom_settings

    service = Service.build(wecom_settings(tmp_path / "home"), clock=SimClock(NOW),
                            wecom_transport=FakeWeCom().transport())
    yield TestClient(create_app(service, run_pump=False))
    service.stop()


def _operator() -> dict[str, str]:
    from tests.api.conftest import OPERATOR

    return {"Authorization": f"Bearer {OPERATOR}"}


def test_api_imports_an_xlsx_sent_as_the_request_body(client: TestClient, tmp_path: Path) -> None:
    data = workbook(tmp_path / "p.xlsx", [HEADER, ["A1", "保湿霜", 119, 5, "在售"], ["A2", "洁面乳", 59, 1]]).read_bytes()
    response = client.post("/api/knowledge/products", content=data, params={"mapping": PRODUCTS_MAPPING},
                           headers={**_operator(), "Content-Type": XLSX_TYPE})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["written"], body["sheet"]) == (True, 2, "商品") and body["indexed"] >= 2


def test_api_reports_a_bad_xlsx_row_at_its_excel_row(client: TestClient, tmp_path: Path) -> None:
    data = workbook(tmp_path / "p.xlsx", [HEADER, ["A1", "保湿霜", 119], ["A2", "洁面乳", "面议"]]).read_bytes()
    response = client.post("/api/knowledge/products", headers=_operator(), json={
        "format": "xlsx", "content_base64": base64.b64encode(data).decode(), "mapping": PRODUCTS_MAPPING})
    assert response.status_code == 422 and [(e["row"], e["field"]) for e in response.json()["errors"]] == [(3, "price")]


def test_api_imports_a_gbk_csv_named_by_its_file_name(client: TestClient) -> None:
    response = client.post("/api/knowledge/products", content=GBK_CSV.encode("gbk"),
                           params={"filename": "商品导出.csv", "mapping": PRODUCTS_MAPPING},
                           headers={**_operator(), "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert (response.json()["written"], response.json()["encoding"]) == (2, "gb18030")


def test_api_refuses_a_body_of_unknown_type_with_415(client: TestClient) -> None:
    response = client.post("/api/knowledge/products", content=b"\xd0\xcf\x11\xe0",
                           headers={**_operator(), "Content-Type": "application/vnd.ms-excel"})
    assert response.status_code == 415 and "?filename=" in response.json()["detail"]


def test_api_corrupt_xlsx_is_400_without_temporary_paths(client: TestClient) -> None:
    response = client.post("/api/knowledge/products", content=b"PK\x03\x04 truncated",
                           headers={**_operator(), "Content-Type": XLSX_TYPE})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("upload.xlsx: not an .xlsx workbook") and "/tmp" not in response.text


def test_cli_imports_an_xlsx_workbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli import app
    from knowledge.settings import get_settings

    monkeypatch.setenv("SOPAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOPAGENT_EMBEDDER", "hash")
    (tmp_path / "home").mkdir()
    path = workbook(tmp_path / "商品.xlsx", [HEADER, ["A1", "保湿霜", 119, 5, "在售"], [], ["A2", "洁面乳", "免费"]])
    get_settings.cache_clear()
    try:
        bad = CliRunner().invoke(app, ["kb", "import", str(path), "--kind", "products",
                                       "--mapping", str(mapping(tmp_path))])
        path = workbook(tmp_path / "商品.xlsx", [HEADER, ["A1", "保湿霜", 119, 5, "在售"]])
        good = CliRunner().invoke(app, ["kb", "import", str(path), "--kind", "products",
                                        "--mapping", str(mapping(tmp_path))])
    finally:
        get_settings.cache_clear()
    bad_output, good_output = ("".join(r.output.split()) for r in (bad, good))  # rich wraps long lines anywhere
    assert bad.exit_code == 1 and "商品.xlsx:row4:price:" in bad_output
    assert good.exit_code == 0 and "imported1productsrow(s)" in good_output and "(sheet商品)" in good_output
