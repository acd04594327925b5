"""Logging in to the console: by password or by the operator token, kept for the tab's session."""

from __future__ import annotations

from tests.console.conftest import VIEWPORTS, log_in
from tests.console.shop import ADMIN, ADMIN_PASSWORD, TOKEN


def test_a_password_login_lands_on_the_workbench_and_names_the_person(browser, shop) -> None:
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    log_in(page, shop, ADMIN, ADMIN_PASSWORD)
    assert page.url.endswith("#/conversations")
    assert ADMIN in page.get_by_test_id("who").inner_text()
    assert not page.errors


def test_a_wrong_password_is_refused_with_a_message(browser, shop) -> None:
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    page.goto(f"{shop.url}/console/#/login")
    page.get_by_test_id("username").fill(ADMIN)
    page.get_by_test_id("password").fill("not-the-password")
    page.get_by_test_id("login").click()
    assert "错误" in page.get_by_test_id("login-error").inner_text()
    page.close()


def test_the_operator_token_logs_in_too(browser, shop) -> None:
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    page.goto(f"{shop.url}/console/#/login")
    page.get_by_text("运营令牌").click()
    page.get_by_test_id("token").fill(TOKEN)
    page.get_by_test_id("login").click()
    page.get_by_test_id("who").wait_for()
    assert "operator" in page.get_by_test_id("who").inner_text()
    page.close()


def test_a_page_asked_for_before_login_is_shown_after_it(browser, shop) -> None:
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    page.goto(f"{shop.url}/console/#/knowledge")
    page.wait_for_url("**/#/login**")
    page.get_by_test_id("username").fill(ADMIN)
    page.get_by_test_id("password").fill(ADMIN_PASSWORD)
    page.get_by_test_id("login").click()
    page.wait_for_url("**/#/knowledge")
    page.close()


def test_logging_out_forgets_the_session(browser, shop) -> None:
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    log_in(page, shop, ADMIN, ADMIN_PASSWORD)
    page.get_by_test_id("logout").click()
    page.wait_for_url("**/#/login**")
    page.goto(f"{shop.url}/console/#/sops")
    page.wait_for_url("**/#/login**")
