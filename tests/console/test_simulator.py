"""The chat simulator in the browser: a simulated customer adds the shop, writes, and each turn shows the
replies and what changed."""

from __future__ import annotations


def test_a_simulated_customer_gets_the_welcome_then_an_answer(page, shop) -> None:
    page.goto(f"{shop.url}/console/#/simulator")
    page.get_by_test_id("sim-start").click()
    page.get_by_test_id("sim-turn").first.wait_for()
    assert page.get_by_test_id("sim-reply").count() >= 1  # the welcome
    page.get_by_test_id("sim-input").fill("我是油皮，容易出油")
    page.get_by_test_id("sim-send").click()
    page.get_by_test_id("sim-turn").nth(1).wait_for()
    turn = page.get_by_test_id("sim-turn").nth(1)
    assert "我是油皮" in turn.inner_text()
    assert turn.get_by_test_id("sim-tag-added").count() >= 1
    assert not page.errors
