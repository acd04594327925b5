from datetime import UTC, datetime

from knowledge.clock import ShopTime
from knowledge.settings import Settings
from sop_graphs.policy import Contact, ContactPolicy, is_unsubscribe

POLICY = ContactPolicy(Settings(), ShopTime("Asia/Shanghai"))
NOON = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 local


def test_marketing_in_quiet_hours_is_deferred_to_eight():
    decision = POLICY.decide(marketing=True, touch="a", contact=Contact(),
                             now=datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # 23:00 local
    assert decision.verdict == "defer" and POLICY.shop.local(decision.until).hour == 8


def test_second_push_of_a_day_is_deferred_not_dropped():
    contact = Contact()
    POLICY.record_send(contact, "a", NOON)
    decision = POLICY.decide(marketing=True, touch="b", contact=contact, now=NOON)
    assert decision.verdict == "defer"
    assert POLICY.shop.local(decision.until).strftime("%d %H:%M") == "24 08:00"  # first slot of the next day


def test_actions_of_the_same_touch_count_once():
    contact = Contact()
    POLICY.record_send(contact, "a", NOON)
    assert POLICY.decide(marketing=True, touch="a", contact=contact, now=NOON).verdict == "send"


def test_unsubscribed_customer_gets_no_marketing():
    assert POLICY.decide(marketing=True, touch="a", contact=Contact(unsubscribed=True), now=NOON).verdict == "cancel"


def test_service_reply_ignores_caps_and_quiet_hours():
    contact = Contact(unsubscribed=True)
    assert POLICY.decide(marketing=False, touch=None, contact=contact,
                         now=datetime(2026, 11, 23, 15, 0, tzinfo=UTC)).verdict == "send"


def test_unsubscribe_phrases_are_recognised():
    assert all(is_unsubscribe(t) for t in ("退订", "别再发了", "不要再推了", "TD"))
    assert not is_unsubscribe("这个面霜怎么用")


def test_generic_content_leaves_the_last_slot_of_the_day_to_time_critical_content():
    contact = Contact(reserved=1)  # a live reminder is still due today; the cap is one push a day
    assert POLICY.decide(marketing=True, touch="nurture", contact=contact, now=NOON).verdict == "defer"
    assert POLICY.decide(marketing=True, touch="live", contact=contact, now=NOON, priority=2).verdict == "send"


def test_nothing_is_reserved_when_no_time_critical_content_is_due():
    assert POLICY.decide(marketing=True, touch="nurture", contact=Contact(), now=NOON).verdict == "send"
