"""The workbench in the browser: customers (search, filters, server-side pages, tags), conversations (take over,
reply as a person, release) and tasks (complete one)."""

from __future__ import annotations

from tests.console.shop import EXTRA_CUSTOMERS


def test_the_customer_list_pages_ten_thousand_customers_on_the_server(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/customers")
    page.wait_for_function(  # the total the server counted, once the first page has come
        "n => Number(document.querySelector('[data-test=customer-total]')?.textContent.replace(/\\D/g, '')) > n",
        arg=EXTRA_CUSTOMERS)
    assert page.get_by_test_id("customer-row").count() <= 100


def test_searching_customers_narrows_the_list_and_keeps_it_in_the_url(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/customers")
    page.get_by_test_id("customer-search").fill("bulk00042")
    page.get_by_test_id("customer-search").press("Enter")
    page.wait_for_url("**q=bulk00042**")
    page.wait_for_function("() => document.querySelectorAll('[data-test=customer-row]').length === 1")
    page.get_by_test_id("customer-row").first.click()
    page.wait_for_url("**/#/customers/bulk00042")
    assert not page.errors


def test_an_operator_adds_a_tag_and_sees_who_set_it(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/customers/bulk00007")
    page.get_by_test_id("tag-add").click()
    page.get_by_role("option", name="顾问跟进", exact=True).click()
    page.get_by_test_id("tag-add-go").click()
    row = page.locator(".tag-row", has=page.locator('[data-test=tag][data-tag="顾问跟进"]'))
    row.wait_for()
    from playwright.sync_api import expect

    expect(row.get_by_test_id("tag-source")).to_contain_text("admin")


def test_an_operator_takes_over_replies_and_releases(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/conversations")
    item = page.get_by_test_id("attention-item").first
    item.wait_for()
    item.click()
    panel = page.get_by_test_id("transcript")
    panel.wait_for()
    state = page.get_by_test_id("bot-state")
    state.wait_for()  # the customer's profile is in: whether the bot is paused is known
    if "机器人接待中" in state.inner_text():
        page.get_by_test_id("takeover").first.click()
    page.get_by_test_id("reply-input").wait_for()
    page.wait_for_function("() => !document.querySelector('[data-test=reply-input]').disabled")
    page.get_by_test_id("reply-input").fill("您好，我是店长，这边帮您处理")
    page.get_by_test_id("reply-send").click()
    page.get_by_test_id("message").filter(has_text="我是店长").first.wait_for()
    page.get_by_test_id("release").first.click()
    page.wait_for_function("() => document.querySelector('[data-test=reply-input]').disabled")
    assert not page.errors


def test_an_employee_completes_a_task_and_it_leaves_the_open_list(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/tasks")
    page.get_by_test_id("tasks-scope").get_by_text("全部").click()
    first = page.get_by_test_id("task").first
    first.wait_for()
    task_id = first.get_attribute("data-task-id")
    first.get_by_test_id("task-done").click()
    page.wait_for_function(f"() => !document.querySelector('[data-test=task][data-task-id=\"{task_id}\"]')")
    assert not page.errors
