"""The onboarding questionnaire met like a person would: several answers at once, holding, stopping, late answers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from agent.inbound import submit
from agent.runtime import Runtime
from knowledge.tables import Customer, CustomerTag
from sop_graphs.tables import SopRun
from tests.agent.conftest import say


def _start(shop: Runtime, cid: str = "c9") -> None:
    submit(shop.deps, key=f"add-{cid}", customer_id=cid, kind="customer_added", payload={"name": "小周"},
           at=shop.deps.clock.now())
    shop.run_until(shop.deps.clock.now() + timedelta(minutes=1))


def _slots(shop: Runtime, cid: str = "c9") -> dict:
    with shop.deps.engine.connect() as conn:
        return conn.execute(select(Customer.attributes).where(Customer.id == cid)).scalar()


def _tags(shop: Runtime, cid: str = "c9") -> set[str]:
    with shop.deps.engine.connect() as conn:
        return set(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == cid)).scalars())


def _waiting(shop: Runtime, cid: str = "c9") -> str | None:
    with shop.deps.engine.connect() as conn:
        return conn.execute(select(SopRun.waiting).where(SopRun.customer_id == cid,
                                                         SopRun.sop_id == "new_customer_nurture")).scalar()


def test_three_answers_in_one_message_fill_three_questions_and_none_is_asked_again(shop: Runtime) -> None:
    _start(shop)
    replies = say(shop, "混合皮，想抗老，预算500左右", cid="c9")
    assert {"skin_type": "混合皮", "concern": "抗老紧致", "budget": 500}.items() <= _slots(shop).items()
    assert not any("2/3" in r or "3/3" in r for r in replies)
    assert {"混合皮", "抗老紧致", "预算500以上"} <= _tags(shop)


def test_descriptive_answer_is_mapped_through_the_vocabulary(shop: Runtime) -> None:
    _start(shop)
    say(shop, "T区油，两颊干", cid="c9")
    assert _slots(shop)["skin_type"] == "混合皮"


def test_hold_on_does_not_count_as_an_invalid_answer(shop: Runtime) -> None:
    _start(shop)
    (reply,) = say(shop, "稍等哈", cid="c9")
    say(shop, "嗯……说不好", cid="c9")  # one real invalid answer: still asked again (max_attempts 2)
    assert "没太看懂" not in reply and "q_skin" in (_waiting(shop) or "")


def test_stop_asking_ends_the_questionnaire_and_never_asks_again(shop: Runtime) -> None:
    _start(shop)
    (reply,) = say(shop, "别问了", cid="c9")
    later = say(shop, "好的", cid="c9")
    assert "不问" in reply and not any("/3" in r for r in later)
    assert "问卷完成" not in _tags(shop)


def test_declined_budget_is_skipped_without_a_budget_tag(shop: Runtime) -> None:
    _start(shop)
    say(shop, "1", cid="c9")
    say(shop, "2", cid="c9")
    say(shop, "保密", cid="c9")
    assert not {"预算200以下", "预算200到500", "预算500以上"} & _tags(shop)


def test_greeting_while_a_question_waits_is_greeted_and_the_question_repeated(shop: Runtime) -> None:
    _start(shop)
    (reply,) = say(shop, "你好呀", cid="c9")
    assert "1/3" in reply and "没太看懂" not in reply


def test_answer_after_the_timeout_is_still_recorded_and_acknowledged(shop: Runtime) -> None:
    _start(shop)
    shop.run_until(shop.deps.clock.now() + timedelta(hours=4))
    (reply,) = say(shop, "我是油皮", cid="c9")
    assert _slots(shop)["skin_type"] == "油皮" and "油皮" in _tags(shop) and "记下" in reply


def test_question_without_a_question_mark_is_answered_while_the_questionnaire_waits(shop: Runtime) -> None:
    _start(shop, "c_demo_zhou")
    replies = say(shop, "帮我查下订单DD20261100050", cid="c_demo_zhou")
    assert any("DD20261100050" in r for r in replies)


def test_name_variable_renders_in_an_ask_question(shop: Runtime) -> None:
    from sop_graphs.actions import render_question
    from sop_graphs.spec import Answer, AskStep

    _start(shop)
    step = AskStep(id="q", kind="ask", question="{name}，你的肤质是？", slot="skin_type", answer=Answer(type="text"))
    with shop.deps.engine.connect() as conn:
        assert render_question(shop.deps, conn, "c9", step) == "小周，你的肤质是？"


def test_a_skin_reaction_after_the_question_timed_out_is_an_incident_not_a_late_answer(shop: Runtime) -> None:
    _start(shop)
    shop.run_until(shop.deps.clock.now() + timedelta(hours=4))
    replies = say(shop, "用了两天 脸上刺痛泛红 怎么办啊", cid="c9")
    assert "skin_type" not in (_slots(shop) or {}) and "敏感肌" not in _tags(shop)
    assert not any("记下" in r for r in replies)
    from sop_graphs.tables import EmployeeTask

    with shop.deps.engine.connect() as conn:
        assert conn.execute(select(EmployeeTask.kind).where(EmployeeTask.customer_id == "c9",
                                                            EmployeeTask.kind == "handoff")).first() is not None


def test_a_bare_number_after_the_question_timed_out_answers_it(shop: Runtime) -> None:
    _start(shop)
    shop.run_until(shop.deps.clock.now() + timedelta(hours=4))
    (reply,) = say(shop, "2", cid="c9")
    assert _slots(shop)["skin_type"] == "油皮" and "记下" in reply


def test_a_short_amount_without_a_currency_word_answers_a_budget_question_that_timed_out(shop: Runtime) -> None:
    _start(shop)
    say(shop, "油皮", cid="c9")
    say(shop, "想补水", cid="c9")
    shop.run_until(shop.deps.clock.now() + timedelta(hours=30))  # the budget question timed out long ago
    (reply,) = say(shop, "大概三百吧", cid="c9")
    assert _slots(shop)["budget"] == 300 and "记下" in reply


def test_a_bare_number_long_after_any_question_is_not_taken_as_an_answer(shop: Runtime) -> None:
    _start(shop)
    shop.run_until(shop.deps.clock.now() + timedelta(days=5))
    say(shop, "2", cid="c9")
    assert "skin_type" not in (_slots(shop) or {})


def test_a_question_the_router_cannot_place_is_answered_not_taken_as_an_invalid_answer(shop: Runtime) -> None:
    _start(shop)
    replies = say(shop, "你们这个是哪个工厂生产的", cid="c9")
    assert len(replies) == 2 and "1/3" in replies[-1]  # an answer to the question, then the question again
    assert "q_skin" in (_waiting(shop) or "")


def test_declining_a_question_that_timed_out_is_acknowledged_not_treated_as_a_query(shop: Runtime) -> None:
    _start(shop)
    shop.run_until(shop.deps.clock.now() + timedelta(hours=4))
    (reply,) = say(shop, "不太清楚", cid="c9")
    assert "没关系" in reply and "没法准确回答" not in reply and "skin_type" not in (_slots(shop) or {})
