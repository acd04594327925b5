"""SOPs in the browser: an error is flagged at its line as the operator types, the fix is saved and published,
the SOP is test-run and a simulated customer goes through it; advisors only read."""

from __future__ import annotations

import httpx

from tests.console.conftest import open_page
from tests.console.shop import ADVISOR, ADVISOR_PASSWORD, TOKEN

GOOD = """id: {id}
name: "{id}"
family: behaviour
goal: 新加好友的客户收到一句见面礼提醒
triggers:
  - on: customer_added
defaults: {{touchpoint: private, mode: member_task}}
steps:
  - id: hello
    kind: message
    marketing: false
    text: "{{name}}，见面礼已经放进你的账户啦"
  - id: done
    kind: end
"""
BAD_LINE = 10  # "    kind: mesage"


def _type_yaml(page, text: str) -> None:
    editor = page.locator("[data-test=yaml-editor] .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def _confirm(page) -> None:
    page.locator(".el-message-box__btns .el-button--primary").click()


def _create_and_publish(shop, sop_id: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=shop.url, headers=headers) as client:
        version = client.put(f"/api/sops/{sop_id}", json={"yaml": GOOD.format(id=sop_id)}).json()["version"]
        assert client.post(f"/api/sops/{sop_id}/publish", json={"version": version}).status_code == 200


def test_a_new_sop_with_an_error_is_flagged_at_its_line_then_fixed_saved_and_published(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/sops")
    page.get_by_test_id("sop-new").click()
    page.wait_for_url("**/#/sops/new")
    page.get_by_test_id("sop-id").fill("welcome_gift")
    _type_yaml(page, GOOD.format(id="welcome_gift").replace("kind: message", "kind: mesage"))
    # validation runs as the operator types: wait for the answer about this text (not an earlier keystroke's)
    problem = page.get_by_test_id("problem").filter(has_text="mesage").first
    problem.wait_for()
    assert f"第 {BAD_LINE} 行" in problem.inner_text()
    assert page.locator(".cm-lintRange-error").count() >= 1  # underlined in the editor too
    _type_yaml(page, GOOD.format(id="welcome_gift"))
    page.get_by_test_id("valid").wait_for()
    page.get_by_test_id("sop-save").click()
    page.wait_for_url("**/#/sops/welcome_gift")
    page.get_by_test_id("sop-publish").click()
    _confirm(page)
    page.wait_for_function("() => document.querySelector('[data-test=sop-status]')?.textContent.includes('运行中')")
    assert not [e for e in page.errors if "404" not in e]


def test_a_test_run_shows_the_timeline_of_what_would_be_sent(page, shop) -> None:
    _create_and_publish(shop, "gift_for_test_run")
    page.goto(f"{shop.url}/console/#/sops/gift_for_test_run")
    page.get_by_test_id("sop-test-run").click()
    page.get_by_test_id("test-run-go").click()
    page.get_by_test_id("test-run-event").first.wait_for()
    events = page.get_by_test_id("test-run-timeline").inner_text()
    assert "见面礼已经放进你的账户" in events


def test_a_simulated_customer_goes_through_the_new_sop(page, shop) -> None:
    _create_and_publish(shop, "gift_for_simulator")
    page.goto(f"{shop.url}/console/#/simulator")
    page.get_by_test_id("sim-sops").click()
    page.get_by_role("option", name="gift_for_simulator").click()  # only this SOP runs
    page.keyboard.press("Escape")
    page.get_by_test_id("sim-start").click()
    page.get_by_test_id("sim-turn").first.wait_for()
    first = page.get_by_test_id("sim-turn").first.inner_text()
    assert "见面礼已经放进你的账户" in first and "gift_for_simulator" in page.get_by_test_id("sim-state").inner_text()


def test_the_sop_list_shows_counts_and_opens_the_editor_with_its_graph(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/sops")
    page.get_by_test_id("sop-row").first.wait_for()
    assert page.get_by_test_id("sop-row").count() >= 17
    page.locator("[data-test=sop-row][data-sop=new_customer_nurture]").click()
    page.wait_for_url("**/#/sops/new_customer_nurture")
    page.locator("[data-test=sop-graph] svg").first.wait_for()
    page.get_by_test_id("valid").wait_for()


def test_versions_can_be_compared(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/sops/new_customer_nurture")
    page.get_by_test_id("valid").wait_for()
    with httpx.Client(base_url=shop.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        text = client.get("/api/sops/new_customer_nurture/source").json()["yaml"]
    _type_yaml(page, text.replace("name: 新客培育", "name: 新客培育（改）", 1))
    page.get_by_test_id("valid").wait_for()
    page.get_by_test_id("sop-save").click()
    page.get_by_role("tab", name="版本").click()
    page.get_by_test_id("version-diff").first.click()
    diff = page.get_by_test_id("diff")
    diff.wait_for()
    assert "新客培育（改）" in diff.inner_text()


def test_an_advisor_reads_an_sop_but_cannot_change_it(browser, shop) -> None:
    page = open_page(browser, shop, user=(ADVISOR, ADVISOR_PASSWORD))
    page.goto(f"{shop.url}/console/#/sops/new_customer_nurture")
    page.get_by_test_id("yaml-editor").wait_for()
    page.locator("[data-test=sop-graph] svg").first.wait_for()
    assert page.get_by_test_id("sop-save").count() == 0 and page.get_by_test_id("sop-publish").count() == 0
    assert page.locator(".cm-content").get_attribute("contenteditable") == "false"
    page.context.close()
