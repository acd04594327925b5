"""Flagged conversations, content gaps, version comparisons and suggestions whose SOP edits validate."""

from __future__ import annotations

from datetime import timedelta

from api.report import review
from api.report.build import ReportContext, build
from api.report.goals import Goals
from knowledge.embeddings import HashingEmbedder
from sop_graphs.loader import load_sop_text
from tests.api.report.fixtures import DAY, TZ, Shop, library, local


def _context(shop: Shop, goals: dict | None = None) -> ReportContext:
    return ReportContext(engine=shop.engine, library=library(), goals=Goals.model_validate(goals or {}), timezone=TZ,
                         embedder=HashingEmbedder())


def _unanswered(shop: Shop, cid: str, minute: int, text: str) -> None:
    shop.message(cid, local(10, minute), text, key=f"in/{cid}{minute}")
    shop.message(cid, local(10, minute), "这个我得查一下", direction="out", key=f"out/{cid}{minute}",
                 meta={"intent": "other", "confidence": 0.4, "grounded": False, "brain": "offline"})


def test_unanswered_questions_are_clustered_by_meaning_with_a_proposed_faq(tmp_path) -> None:
    shop = Shop(tmp_path)
    questions = ["发票怎么开", "能开发票吗", "发票怎么开呀", "开发票要怎么弄", "门店地址在哪", "线下门店地址在哪里"]
    for i, text in enumerate(questions):
        shop.customer(f"c{i}", local(8))
        _unanswered(shop, f"c{i}", i, text)
    with shop.engine.connect() as conn:
        gaps = review.gaps(conn, DAY, TZ, HashingEmbedder())
    assert [g.count for g in gaps] == [4, 2]
    assert "发票" in gaps[0].label and all("门店" in q for q in gaps[1].questions)
    assert gaps[0].customers == 4 and gaps[0].proposed_faq["title"] == gaps[0].label
    assert "请补充答案" in gaps[0].proposed_faq["text"]


def test_a_conversation_with_a_complaint_and_a_handoff_is_flagged_with_an_excerpt(tmp_path) -> None:
    shop = Shop(tmp_path)
    shop.customer("angry", local(8))
    shop.customer("calm", local(8))
    shop.message("angry", local(10), "收到的面霜瓶子碎了！！", key="in/a1")
    shop.message("angry", local(10), "非常抱歉…", direction="out", key="out/a1",
                 meta={"intent": "damaged", "confidence": 0.9, "grounded": True})
    shop.note("angry", local(10), "handoff")
    shop.message("calm", local(11), "谢谢", key="in/b1")
    shop.message("calm", local(11), "不客气", direction="out", key="out/b1",
                 meta={"intent": "thanks", "confidence": 0.9, "grounded": True})
    with shop.engine.connect() as conn:
        (flag,) = review.flagged(conn, DAY, TZ)
    assert flag.customer_id == "angry" and flag.reasons == ["情绪负面/投诉", "转人工"]
    assert [line.text for line in flag.excerpt] == ["收到的面霜瓶子碎了！！", "非常抱歉…"]
    assert flag.link == "/api/customers/angry/timeline"


def _questionnaire_day(shop: Shop, answered: int, asked: int = 20) -> None:
    for i in range(asked):
        shop.customer(f"c{i}", local(8))
        shop.run(f"r{i}", f"c{i}", "new_customer_nurture", local(9))
        shop.action(f"c{i}", local(9), run_id=f"r{i}", sop_id="new_customer_nurture", step_id="q_skin", action="ask")
    for i in range(answered):
        shop.note(f"c{i}", local(11), "answer", run_id=f"r{i}", key=f"r{i}/q_skin/1/answer")


def test_a_question_below_its_goal_gets_a_longer_timeout_proposed_as_a_valid_diff(tmp_path) -> None:
    shop = Shop(tmp_path)
    _questionnaire_day(shop, answered=6)
    report = build(_context(shop, {"sops": {"new_customer_nurture": [
        {"metric": "questionnaire_completion", "min": 0.6}]}}), DAY, local(9, days=2))
    (suggestion,) = [s for s in report.suggestions if s.id.startswith("question:")]
    assert suggestion.sop_id == "new_customer_nurture" and suggestion.step_id == "q_skin"
    assert "30.0%" in suggestion.evidence and "60.0%" in suggestion.evidence
    before = str(next(s for s in library().sops["new_customer_nurture"].steps if s.id == "q_skin").timeout)
    doubled = f"{int(before.rstrip('h')) * 2}h"
    assert suggestion.validated and suggestion.diff and f"-    timeout: {before}" in suggestion.diff
    spec, _, problems = load_sop_text(suggestion.proposed_yaml or "", "proposed.yaml", "new_customer_nurture")
    assert spec is not None and not problems
    assert str(next(s for s in spec.steps if s.id == "q_skin").timeout) == doubled


def test_a_question_that_meets_its_goal_gets_no_suggestion(tmp_path) -> None:
    shop = Shop(tmp_path)
    _questionnaire_day(shop, answered=15)
    report = build(_context(shop, {"shop": [{"metric": "questionnaire_completion", "min": 0.6}]}), DAY,
                   local(9, days=2))
    assert not [s for s in report.suggestions if s.id.startswith("question:")]


def test_a_check_in_dip_proposes_moving_the_reminder_before_the_hour_members_check_in(tmp_path) -> None:
    shop = Shop(tmp_path)
    for i in range(40):
        shop.customer(f"m{i}", local(8, days=-10))
        shop.event(f"m{i}", local(9, days=-10), "behaviour", {"event": "group_joined", "group": "vip_group"})
    for day in range(-7, 1):
        count = 6 if day == 0 else 16  # 15% today against 40% all week
        for i in range(count):
            shop.event(f"m{i}", local(20, i, days=day), "behaviour", {"event": "group_checkin", "group": "vip_group"})
    report = build(_context(shop), DAY, local(9, days=2))
    (dip,) = [a for a in report.anomalies if a.metric == "checkin_rate" and a.scope == "vip_group"]
    assert dip.change < -0.25
    (suggestion,) = [s for s in report.suggestions if s.id == "checkin:vip_group"]
    assert suggestion.sop_id == "group_daily_checkin" and "20:00" in suggestion.evidence
    assert suggestion.validated and '"30 19 * * *"' in (suggestion.diff or "")


def test_a_version_published_inside_the_window_is_compared_before_and_after(tmp_path) -> None:
    shop = Shop(tmp_path)
    for i in range(6):
        v = 1 if i < 3 else 2
        started = local(9, days=-4) if v == 1 else local(9, days=-1)
        shop.customer(f"c{i}", local(8, days=-5))
        shop.run(f"r{i}", f"c{i}", "new_customer_nurture", started + timedelta(minutes=i), version=v,
                 status="completed" if i in (0, 3, 4) else "exited", ended=started + timedelta(hours=5))
        shop.action(f"c{i}", started, run_id=f"r{i}", sop_id="new_customer_nurture", step_id="q_skin", action="ask")
    shop.note("c3", local(11, days=-1), "answer", run_id="r3", key="r3/q_skin/1/answer")
    with shop.engine.connect() as conn:
        (comparison,) = review.comparisons(conn, DAY, TZ)
    assert (comparison.version_before, comparison.version_after) == (1, 2)
    assert comparison.published_on == DAY - timedelta(days=1)
    assert (comparison.before.enrolled, comparison.before.completed, comparison.before.answer_rate) == (3, 1, 0.0)
    assert (comparison.after.enrolled, comparison.after.completed, comparison.after.answer_rate) == (3, 2, round(1 / 3, 4))


def test_an_edit_at_an_unknown_place_is_not_proposed() -> None:
    lib = library()
    with open(lib.sources["new_customer_nurture"].file, encoding="utf-8") as f:
        text = f.read()
    assert review.propose(lib, "new_customer_nurture", text, [review.Edit(("steps", 99), "timeout", "48h")]) is None


def test_a_proposal_that_breaks_the_sop_is_marked_not_validated() -> None:
    lib = library()
    with open(lib.sources["new_customer_nurture"].file, encoding="utf-8") as f:
        text = f.read()
    index = next(i for i, s in enumerate(lib.sops["new_customer_nurture"].steps) if s.id == "q_skin")
    new, diff, valid = review.propose(lib, "new_customer_nurture", text,
                                      [review.Edit(("steps", index), "timeout", "forever")]) or ("", "", True)
    assert not valid and "timeout: forever" in diff


def test_a_group_where_nobody_checks_in_gets_no_reminder_suggestion_for_the_shops_missed_goal(tmp_path) -> None:
    shop = Shop(tmp_path)
    for i in range(30):
        shop.customer(f"m{i}", local(8, days=-10))
        shop.event(f"m{i}", local(9, days=-10), "behaviour", {"event": "group_joined", "group": "live_group"})
    report = build(_context(shop, {"shop": [{"metric": "checkin_rate", "min": 0.3}]}), DAY, local(9, days=2))
    assert [g.status for g in report.goals] == ["missed"]
    assert not [s for s in report.suggestions if s.id.startswith("checkin:")]
