"""Each metric of a shop day against a day counted by hand (tests/api/report/fixtures.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.report.metrics import compute
from api.report.schema import Metrics
from tests.api.report.fixtures import DAY, TZ, Shop, library, local


@pytest.fixture
def shop(tmp_path) -> Shop:
    return Shop(tmp_path)


def metrics(shop: Shop, sla: float = 10.0) -> Metrics:
    with shop.engine.connect() as conn:
        return compute(conn, library(), DAY, TZ, sla_minutes=sla)


def test_new_customers_are_those_added_on_the_shop_local_day_by_channel_and_owner(shop: Shop) -> None:
    shop.customer("a", local(0, 10), channel="live_qr", owner="xiaohe")
    shop.customer("b", local(23, 50), channel="live_qr", owner="meimei")
    shop.customer("c", local(12), owner="xiaohe")
    shop.customer("before", local(23, 30, days=-1), channel="live_qr")  # 15:30 UTC on the 24th: yesterday locally
    shop.customer("after", local(0, 5, days=1), channel="live_qr")
    m = metrics(shop)
    assert m.new_customers == 3 and m.customers_total == 4
    assert m.new_by_channel == {"live_qr": 2, "（无渠道码）": 1}
    assert m.new_by_owner == {"xiaohe": 2, "meimei": 1}


def test_a_funnel_counts_reach_sends_answers_and_drop_off_per_sop_version(shop: Shop) -> None:
    for i in range(4):
        shop.customer(f"c{i}", local(9))
        shop.run(f"r{i}", f"c{i}", "new_customer_nurture", local(9, i))
        shop.action(f"c{i}", local(9, 5), run_id=f"r{i}", sop_id="new_customer_nurture", step_id="welcome")
        shop.action(f"c{i}", local(9, 6), run_id=f"r{i}", sop_id="new_customer_nurture", step_id="q_skin",
                    action="ask")
    for i in range(3):  # three answer the skin question; one of them goes on to the concern question
        shop.note(f"c{i}", local(10), "answer", run_id=f"r{i}", key=f"r{i}/q_skin/1/answer")
    shop.action("c0", local(10, 1), run_id="r0", sop_id="new_customer_nurture", step_id="q_concern", action="ask")
    m = metrics(shop)
    (funnel,) = m.funnels
    assert (funnel.sop_id, funnel.version, funnel.enrolled, funnel.active) == ("new_customer_nurture", 1, 4, 4)
    steps = {s.step_id: s for s in funnel.steps}
    assert [s.step_id for s in funnel.steps] == ["welcome", "q_skin", "q_concern"]  # the SOP's order
    assert (steps["q_skin"].reached, steps["q_skin"].sent, steps["q_skin"].answered) == (4, 4, 3)
    assert steps["q_skin"].drop_off == 0.75 and steps["welcome"].drop_off == 0.0
    assert steps["welcome"].answered is None  # not a question


def test_runs_of_two_versions_are_two_funnels(shop: Shop) -> None:
    shop.customer("a", local(9))
    shop.run("r1", "a", "new_customer_nurture", local(9), version=1)
    shop.run("r2", "a", "new_customer_nurture", local(10), version=2)
    assert [(f.version, f.enrolled) for f in metrics(shop).funnels] == [(1, 1), (2, 1)]


def test_completion_and_exits_count_runs_that_ended_on_the_day_with_their_reasons(shop: Shop) -> None:
    shop.customer("a", local(9))
    shop.run("r1", "a", "repurchase_care", local(9, days=-3), status="completed", ended=local(11))
    shop.run("r2", "a", "repurchase_care", local(9, days=-3), status="exited", ended=local(12), reason="purchased",
             step="d7_care")
    shop.run("r3", "a", "repurchase_care", local(9, days=-3), status="exited", ended=local(13), reason="unsubscribed")
    shop.run("r4", "a", "repurchase_care", local(9, days=-3), status="completed", ended=local(1, days=1))
    (funnel,) = metrics(shop).funnels
    assert (funnel.completed, funnel.exited, funnel.completion_rate) == (1, 2, round(1 / 3, 4))
    assert funnel.exit_reasons == {"purchased": 1, "unsubscribed": 1}
    assert funnel.enrolled == 0 and funnel.active == 1  # r4 was still under way at midnight


def test_sends_are_counted_by_mode_touchpoint_and_executor_with_deferrals_by_reason(shop: Shop) -> None:
    shop.customer("a", local(9))
    shop.action("a", local(9), mode="kf")
    shop.action("a", local(9), mode="member_task", marketing=True)
    shop.action("a", local(9), mode="group_task", touchpoint="group")
    shop.action("a", local(9), action="tag", mode="api")  # not something a customer sees
    shop.action("a", local(9), status="pending")
    shop.note("a", local(9), "deferred", detail={"reason": "daily cap of 1 reached"})
    shop.note("a", local(10), "deferred", detail={"reason": "daily cap of 1 reached"})
    shop.note("a", local(10), "deferred", detail={"reason": "quiet hours"})
    shop.note("a", local(11), "cancelled", summary="取消「coupon」（expired before the next allowed slot）")
    s = metrics(shop).sends
    assert (s.total, s.marketing) == (3, 1)
    assert s.by_mode == {"kf": 1, "member_task": 1, "group_task": 1}
    assert s.by_touchpoint == {"private": 2, "group": 1} and s.by_executor == {"ai": 1, "employee": 2}
    assert s.deferrals_by_reason == {"daily cap of 1 reached": 2, "quiet hours": 1}
    assert s.cancellations_by_reason == {"expired before the next allowed slot": 1} and s.cancelled == 1


def test_reply_rate_counts_customers_who_wrote_back_within_24_hours_of_our_first_send(shop: Shop) -> None:
    for cid in "abcd":
        shop.customer(cid, local(8))
        shop.action(cid, local(10), run_id=None, sop_id="x")
    shop.message("a", local(10, 30), "好的")  # 30 min
    shop.message("b", local(9, 30, days=1), "收到")  # next morning, within 24 h: 23 h 30 min
    shop.message("c", local(10, 30, days=1), "在吗")  # 24 h 30 min: too late
    shop.message("d", local(9, 50), "你好")  # before our send: not a reply
    r = metrics(shop).replies
    assert (r.touched, r.replied, r.reply_rate) == (4, 2, 0.5)
    assert r.first_reply_minutes_p50 == (30 + 1410) / 2
    assert r.inbound_messages == 2 and r.customers_writing == 2  # a and d wrote on the day itself


def test_the_bot_reply_time_is_from_a_customer_message_to_its_reply(shop: Shop) -> None:
    shop.customer("a", local(8))
    key = shop.message("a", local(10), "面霜多少钱", key="in/w1")
    shop.message("a", local(10) + timedelta(seconds=4), "¥168", direction="out", key="out/w1",
                 meta={"intent": "price", "confidence": 0.9, "grounded": True, "brain": "offline"})
    assert key == "in/w1"
    assert metrics(shop).replies.bot_reply_seconds_p50 == 4.0


def test_questionnaire_completion_is_answers_over_questions_sent_per_question(shop: Shop) -> None:
    for i in range(5):
        shop.customer(f"c{i}", local(9))
        shop.run(f"r{i}", f"c{i}", "new_customer_nurture", local(9))
        shop.action(f"c{i}", local(9), run_id=f"r{i}", sop_id="new_customer_nurture", step_id="q_skin", action="ask")
    for i in range(2):
        shop.note(f"c{i}", local(11), "answer", run_id=f"r{i}", key=f"r{i}/q_skin/1/answer")
    shop.note("c4", local(11), "answer", run_id="r4", key="r4/q_skin/1/skip")  # skipped: not an answer
    (question,) = metrics(shop).questions
    assert (question.step_id, question.slot, question.asked, question.answered, question.completion) == \
        ("q_skin", "skin_type", 5, 2, 0.4)


def test_coupons_issued_and_redeemed_by_an_order_naming_the_customers_code(shop: Shop) -> None:
    for cid in "abc":
        shop.customer(cid, local(8))
    shop.coupon("a", local(9), "WELCOME-A")
    shop.coupon("b", local(9), "WELCOME-B")
    shop.coupon("c", local(9), "LIVE-C", campaign="live_20")
    shop.event("a", local(12), "order", {"event": "paid", "order_id": "o1", "amount": 100, "coupon": "WELCOME-A"})
    shop.event("c", local(12), "order", {"event": "paid", "order_id": "o2", "amount": 50, "coupon": "WELCOME-B"})
    c = metrics(shop).coupons
    assert (c.issued, c.redeemed) == (3, 1)  # c used b's code: not a redemption of c's coupon
    assert c.by_campaign == {"welcome_10": 2, "live_20": 1}


def test_an_order_is_attributed_to_the_sop_that_last_touched_its_customer_within_7_days(shop: Shop) -> None:
    for cid in "abc":
        shop.customer(cid, local(8, days=-20))
    shop.action("a", local(10, days=-3), sop_id="new_customer_nurture")
    shop.action("a", local(10, days=-1), sop_id="repurchase_care")  # the last touch
    shop.action("b", local(10, days=-8), sop_id="new_customer_nurture")  # too long ago
    shop.action("c", local(20), sop_id="livestream_selling")  # after the order
    shop.event("a", local(12), "order", {"event": "paid", "order_id": "o1", "amount": 199})
    shop.event("b", local(12), "order", {"event": "paid", "order_id": "o2", "amount": 88.5})
    shop.event("c", local(12), "order", {"event": "paid", "order_id": "o3", "amount": 10})
    shop.event("a", local(13), "order", {"event": "shipped", "order_id": "o1"})
    a = metrics(shop).attribution
    assert (a.orders, a.gmv, a.attributed_orders, a.attributed_gmv) == (3, 297.5, 1, 199.0)
    assert set(a.by_sop) == {"repurchase_care"} and a.by_sop["repurchase_care"].gmv == 199.0
    assert "7" in a.rule


def test_handoffs_are_measured_against_the_sla(shop: Shop) -> None:
    shop.customer("a", local(8))
    shop.task("a", local(10), done_at=local(10, 6))  # 6 min: within 10
    shop.task("a", local(11), done_at=local(11, 40))  # 40 min: breached
    shop.task("a", local(12))  # still open at midnight: breached
    shop.task("a", local(23, 55))  # open, but its SLA runs past midnight: not yet breached
    shop.task("a", local(9), kind="send_private")  # not a handoff
    s = metrics(shop).service
    assert (s.handoffs, s.handled, s.within_sla, s.breached) == (4, 2, 1, 2)
    assert s.time_to_human_minutes_p50 == 23.0 and s.sla_rate == round(1 / 3, 4)


def test_task_completion_and_overdue_tasks(shop: Shop) -> None:
    shop.customer("a", local(8))
    shop.task("a", local(9), kind="send_private", due=local(12), done_at=local(10))
    shop.task("a", local(9), kind="send_private", due=local(12))
    shop.task("a", local(9), kind="post_moment", due=local(9, days=1))  # not due yet at midnight
    t = metrics(shop).tasks
    assert (t.created, t.done, t.overdue, t.completion_rate) == (3, 1, 1, round(1 / 3, 4))
    assert t.by_kind == {"send_private": 2, "post_moment": 1}


def test_group_check_in_rate_is_members_who_checked_in_that_day(shop: Shop) -> None:
    for i in range(5):
        shop.customer(f"m{i}", local(8, days=-5))
        shop.event(f"m{i}", local(9, days=-5), "behaviour", {"event": "group_joined", "group": "vip_group"})
    shop.event("m4", local(9, days=-1), "behaviour", {"event": "group_left", "group": "vip_group"})
    shop.event("m0", local(9), "behaviour", {"event": "group_checkin", "group": "vip_group"})
    shop.event("m1", local(21), "behaviour", {"event": "group_checkin", "group": "vip_group"})
    shop.event("m1", local(22), "behaviour", {"event": "group_checkin", "group": "vip_group"})  # once a day counts
    shop.event("m2", local(9, days=-1), "behaviour", {"event": "group_checkin", "group": "vip_group"})  # yesterday
    (group,) = metrics(shop).groups
    assert (group.group, group.name, group.members, group.checkins, group.checkin_rate) == \
        ("vip_group", "小禾家护肤交流群", 4, 2, 0.5)


def test_unanswered_and_low_confidence_turns_and_model_fallbacks(shop: Shop) -> None:
    shop.customer("a", local(8))
    turns = [{"intent": "price", "confidence": 0.9, "grounded": True, "brain": "llm"},
             {"intent": "invoice", "confidence": 0.3, "grounded": False, "brain": "offline", "llm_failed": True},
             {"intent": "other", "confidence": 0.4, "grounded": False, "brain": "offline", "llm_rejected": True}]
    for i, meta in enumerate(turns):
        shop.message("a", local(10, i), "回复", direction="out", key=f"out/q{i}", meta=meta)
    m = metrics(shop)
    assert (m.conversations.turns, m.conversations.unanswered, m.conversations.low_confidence) == (3, 2, 2)
    assert (m.llm.turns_by_model, m.llm.errors, m.llm.rejected, m.llm.fallbacks) == (1, 1, 1, 2)


def test_unsubscribes_and_deletions_of_the_day(shop: Shop) -> None:
    shop.customer("a", local(8, days=-3), unsubscribed_at=local(15))
    shop.customer("b", local(8, days=-3), unsubscribed_at=local(15, days=-1))
    shop.event("c", local(16), "customer_deleted", {})
    m = metrics(shop)
    assert (m.unsubscribes, m.deletions) == (1, 1)


def test_complaints_are_customers_whose_message_was_understood_as_one(shop: Shop) -> None:
    shop.customer("a", local(8))
    shop.customer("b", local(8))
    for key, cid, intent in (("out/1", "a", "damaged"), ("out/2", "a", "complaint"), ("out/3", "b", "price")):
        shop.message(cid, local(10), "x", direction="out", key=key, meta={"intent": intent, "confidence": 0.9})
    assert metrics(shop).service.complaints == 1
