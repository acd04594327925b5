"""Knowledge, library and people in the browser: an Excel import with a bad row shows the row Excel numbers and
imports nothing; a catalogue edit that breaks an SOP is refused with its problems; an admin adds a person."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook

MAPPING = "fields: {商品编码: sku, 商品名称: name, 价格: price, 库存: stock}"


def _workbook(path: Path, rows: list[list[object]]) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.title = "商品"
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_an_excel_import_with_a_bad_row_names_the_row_and_imports_nothing(page, shop, tmp_path) -> None:
    path = _workbook(tmp_path / "新品.xlsx", [["商品编码", "商品名称", "价格", "库存"], ["N1", "新品面霜", 129, 10],
                                             ["N2", "新品精华", "面议", 5]])
    page.goto(f"{shop.url}/console/#/knowledge")
    page.locator("[data-test=kb-file] input[type=file]").set_input_files(str(path))
    page.get_by_placeholder("可选：YAML").fill(MAPPING)
    page.get_by_test_id("kb-import").click()
    errors = page.get_by_test_id("kb-errors")
    errors.wait_for()
    assert "3" in errors.locator(".el-table__row").first.inner_text()  # the row Excel shows: header 1, N2 is 3
    assert "price" in errors.inner_text()
    assert "未导入" in page.get_by_test_id("kb-result").inner_text()


def test_a_good_excel_import_is_indexed_and_searchable(page, shop, tmp_path) -> None:
    path = _workbook(tmp_path / "新品.xlsx", [["商品编码", "商品名称", "价格", "库存"], ["N9", "雪松香氛蜡烛", 89, 10]])
    page.goto(f"{shop.url}/console/#/knowledge")
    page.locator("[data-test=kb-file] input[type=file]").set_input_files(str(path))
    page.get_by_placeholder("可选：YAML").fill(MAPPING)
    page.get_by_test_id("kb-import").click()
    page.get_by_test_id("kb-result").filter(has_text="已导入").wait_for()
    page.get_by_test_id("kb-trial").fill("香氛蜡烛")
    page.get_by_test_id("kb-trial").press("Enter")
    page.get_by_text("雪松香氛蜡烛").first.wait_for()


def test_a_catalogue_edit_that_breaks_an_sop_is_refused_with_its_problems(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/library")
    page.locator("[data-test=yaml-editor] .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text("{}\n")  # every material gone: SOPs that send one no longer validate
    page.get_by_test_id("library-save").click()
    page.get_by_test_id("problem").first.wait_for()
    assert page.get_by_test_id("problem").count() >= 1


def test_an_admin_adds_a_person_with_a_role(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/people")
    page.get_by_test_id("operator-add").click()
    dialog = page.locator(".el-dialog")
    dialog.get_by_placeholder("字母、数字、_.@-").fill("xiaomei")
    dialog.get_by_placeholder("至少 8 位").fill("password-123")
    dialog.get_by_text("顾问/售后").click()
    dialog.get_by_role("button", name="添加").click()
    page.get_by_test_id("operators").get_by_text("xiaomei").wait_for()
