"""Reports in the browser: the day's report with interactive charts, and a suggested SOP change opened in the
editor as an unsaved draft (never saved or published by itself)."""

from __future__ import annotations

import httpx

from tests.console.shop import TOKEN


def test_the_report_list_opens_the_days_report_with_its_charts(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/reports")
    page.get_by_test_id("report-day").first.click()
    page.wait_for_url(f"**/#/reports/{shop.report_day.isoformat()}")
    page.get_by_test_id("narrative").wait_for()
    page.locator("[data-test=echart] canvas").first.wait_for()
    assert page.locator("[data-test=echart] canvas").count() >= 2
    assert not page.errors


def test_a_suggested_change_opens_in_the_editor_as_an_unsaved_draft(page, shop) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=shop.url, headers=headers) as client:
        before = {s["id"]: s["latest_version"] for s in client.get("/api/sops").json()}
    page.goto(f"{shop.url}/console/#/reports/{shop.report_day.isoformat()}")
    suggestion = page.get_by_test_id("suggestion").filter(has=page.get_by_test_id("apply-suggestion")).first
    suggestion.get_by_test_id("apply-suggestion").click()
    page.wait_for_url("**/#/sops/**from=report**")
    page.get_by_test_id("draft-banner").wait_for()
    page.get_by_test_id("unsaved").wait_for()
    sop_id = page.url.split("/sops/")[1].split("?")[0]
    with httpx.Client(base_url=shop.url, headers=headers) as client:
        after = {s["id"]: s["latest_version"] for s in client.get("/api/sops").json()}
    assert after[sop_id] == before[sop_id]  # nothing saved, nothing published: the operator reviews first
