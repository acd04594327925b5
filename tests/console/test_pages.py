"""Every console page at 1280×800 and on a phone (390×844): it loads without a browser error, shows its content
in Chinese, does not scroll sideways on the phone, and is saved as a screenshot (tests/artifacts/console/)."""

from __future__ import annotations

import pytest

from tests.console.conftest import VIEWPORTS, open_page

PAGES = {  # name → (route, an element the page shows once its data is in)
    "conversations": ("conversations", "[data-test=attention-item]"),
    "tasks": ("tasks", "[data-test=task], [data-test=tasks-empty]"),
    "customers": ("customers", "[data-test=customer-row]"),
    "customer": ("customers/bulk00042", "[data-test=timeline]"),
    "sops": ("sops", "[data-test=sop-row]"),
    "sop-editor": ("sops/new_customer_nurture", "[data-test=valid]"),
    "sop-new": ("sops/new", "[data-test=yaml-editor] .cm-content"),
    "simulator": ("simulator", "[data-test=sim-start]"),
    "reports": ("reports", "[data-test=report-day]"),
    "report": ("reports/{day}", "[data-test=echart] canvas"),
    "knowledge": ("knowledge", "[data-test=kb-kind]"),
    "library": ("library", "[data-test=yaml-editor] .cm-content"),
    "people": ("people", "[data-test=audit] .el-table__row"),
}


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def sized(request, browser, shop):  # type: ignore[no-untyped-def]
    page = open_page(browser, shop, request.param)
    yield request.param, page
    page.context.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_loads_cleanly_at_both_sizes(sized, shop, shot, name: str) -> None:
    size, page = sized
    route, ready = PAGES[name]
    page.errors.clear()
    page.goto(f"{shop.url}/console/#/{route.format(day=shop.report_day.isoformat())}")
    page.locator(ready).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => [...document.querySelectorAll('.el-loading-mask')].every(m => !m.offsetParent)")
    shot(page, name, size)
    assert not page.errors, page.errors
    text = page.locator("body").inner_text()
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) > 10  # a Chinese page
    if size == "phone":
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px on a phone"
