"""Hand-built reports for the rendering tests: a busy day at a tea shop, and a day with nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from api.report.schema import (
    Anomaly,
    Attribution,
    Conversations,
    Coupons,
    Flagged,
    FunnelSummary,
    Gap,
    GoalResult,
    GroupStat,
    Line,
    Llm,
    Metrics,
    Narrative,
    QuestionStat,
    Replies,
    Report,
    Sends,
    Service,
    SopAttribution,
    SopFunnel,
    StepFunnel,
    Suggestion,
    Tasks,
    Trend,
    TrendPoint,
    VersionComparison,
)

DAY = date(2026, 11, 23)
HOSTILE = "<script>alert(1)</script> 订单号 A|B | 退款?"

DIFF = """--- a/sops/new_customer_nurture.yaml
+++ b/sops/new_customer_nurture.yaml
@@ -18,7 +18,7 @@ steps:
   - id: day1_intro
     kind: message
-    wait: {days: 1, at: "09:00"}
+    wait: {days: 1, at: "20:00"}
     text: 您好，我是{{shop}}的茶艺顾问小茶～
   - id: ask_taste
     kind: ask
"""


def _days(n: int) -> list[date]:
    return [DAY - timedelta(days=n - 1 - i) for i in range(n)]


def _trend(metric: str, label: str, unit: str, values: list[float | None]) -> Trend:
    return Trend(metric=metric, label=label, unit=unit,  # type: ignore[arg-type]
                 points=[TrendPoint(day=d, value=v) for d, v in zip(_days(len(values)), values, strict=True)])


def _funnels() -> list[SopFunnel]:
    nurture = SopFunnel(
        sop_id="new_customer_nurture", name="新客七日培育", version=3, enrolled=42, active=118, completed=17,
        exited=6, exit_reasons={"unsubscribed": 3, "purchased": 2, "deleted": 1}, completion_rate=17 / 23,
        steps=[
            StepFunnel(step_id="welcome", kind="message", reached=42, sent=42, dropped=0, drop_off=0.0),
            StepFunnel(step_id="day1_intro", kind="message", reached=39, sent=37, dropped=2, drop_off=0.051),
            StepFunnel(step_id="ask_taste", kind="ask", reached=37, sent=36, answered=14, dropped=3, drop_off=0.189),
            StepFunnel(step_id="coupon_new", kind="coupon", reached=30, sent=30, dropped=1, drop_off=0.1),
            StepFunnel(step_id="group_invite", kind="group_invite", reached=27, sent=25, dropped=2, drop_off=None),
        ])
    care = SopFunnel(
        sop_id="post_purchase_care", name="购后关怀", version=5, enrolled=31, active=64, completed=22, exited=2,
        exit_reasons={"complained": 1, "refunded": 1}, completion_rate=22 / 24,
        steps=[
            StepFunnel(step_id="thanks", kind="message", reached=31, sent=31, drop_off=0.032),
            StepFunnel(step_id="brew_guide", kind="message", reached=30, sent=29, dropped=1, drop_off=0.1),
            StepFunnel(step_id="ask_review", kind="ask", reached=27, sent=27, answered=9, dropped=0, drop_off=None),
        ])
    wakeup = SopFunnel(
        sop_id="silent_wakeup", name="沉默客户唤醒", version=1, enrolled=120, active=96, completed=3, exited=21,
        exit_reasons={"no_reply": 18, "unsubscribed": 3}, completion_rate=0.125,
        steps=[
            StepFunnel(step_id="wake_msg", kind="message", reached=120, sent=88, dropped=32, drop_off=0.267),
            StepFunnel(step_id="wake_task", kind="message", reached=88, sent=61, dropped=27, drop_off=None),
        ])
    return [nurture, care, wakeup]


def _metrics() -> Metrics:
    return Metrics(
        day=DAY, timezone="Asia/Shanghai", customers_total=5832, new_customers=42,
        new_by_channel={"门店二维码": 19, "直播间": 15, "包裹卡": 8}, new_by_owner={"小茶": 25, "阿青": 17},
        enrolments=193, funnels=_funnels(),
        sends=Sends(total=376, marketing=142, by_mode={"kf": 201, "welcome": 42, "member_task": 96, "group_task": 37},
                    by_touchpoint={"private": 339, "group": 37}, by_executor={"ai": 243, "employee": 133},
                    deferred=18, cancelled=9, deferrals_by_reason={"quiet_hours": 12, "frequency_cap": 6},
                    cancellations_by_reason={"unsubscribed": 5, "expired": 4}),
        tasks=Tasks(created=58, done=47, overdue=6, completion_rate=47 / 58, by_kind={"member_task": 44, "group_task": 14}),
        replies=Replies(touched=243, replied=51, reply_rate=51 / 243, first_reply_minutes_p50=37.5, inbound_messages=412,
                        customers_writing=133, bot_reply_seconds_p50=6.2),
        questions=[QuestionStat(sop_id="new_customer_nurture", step_id="ask_taste", slot="taste", asked=36, answered=14,
                                completion=14 / 36),
                   QuestionStat(sop_id="post_purchase_care", step_id="ask_review", slot="rating", asked=27, answered=9,
                                completion=1 / 3)],
        coupons=Coupons(issued=30, by_campaign={"新客立减20": 30}, redeemed=4, redemption_rate=4 / 30),
        attribution=Attribution(rule="下单前 7 天内收到过 SOP 消息的客户，订单归因于最近一次触达的 SOP", orders=64,
                                gmv=18420.5, attributed_orders=23, attributed_gmv=6035.0,
                                by_sop={"new_customer_nurture": SopAttribution(orders=9, gmv=1782.0),
                                        "post_purchase_care": SopAttribution(orders=11, gmv=3366.0),
                                        "silent_wakeup": SopAttribution(orders=3, gmv=887.0)}),
        service=Service(complaints=3, handoffs=11, sla_minutes=30, handled=12, within_sla=10, breached=3,
                        time_to_human_minutes_p50=14.0, sla_rate=10 / 13),
        unsubscribes=8, deletions=2,
        groups=[GroupStat(group="wrKx01", name="早春茶友会 1 群", members=186, checkins=41, checkin_rate=41 / 186),
                GroupStat(group="wrKx02", name="早春茶友会 2 群", members=142, checkins=0, checkin_rate=0.0)],
        conversations=Conversations(turns=388, unanswered=17, low_confidence=9, handed_off=11),
        llm=Llm(turns_by_model=352, fallbacks=19, errors=4, rejected=2, calls=431, tokens=602_318),
    )


def sample_report() -> Report:
    reply = [0.31, 0.33, 0.29, 0.32, 0.34, 0.30, 0.31, 0.33, 0.35, 0.32, 0.30, 0.26, 0.23, 51 / 243]
    trends = [
        _trend("reply_rate", "回复率", "rate", reply),
        _trend("new_customers", "新增客户", "count", [35, 38, 29, 44, 51, 47, 39, 36, 41, 40, 45, 52, 48, 42]),
        _trend("task_completion_rate", "任务完成率", "rate",
               [0.78, 0.82, 0.85, None, None, 0.80, 0.83, 0.86, 0.84, 0.79, 0.81, 0.83, 0.85, 47 / 58]),
        _trend("first_reply_minutes_p50", "首次回复中位时长", "minutes",
               [22.0, 25.5, 19.0, 24.0, 28.0, 21.5, 26.0, None, 23.0, 27.5, 30.0, 33.0, 35.0, 37.5]),
        _trend("attributed_gmv", "归因 GMV", "yuan",
               [4210, 5030, 3890, 6120, 7044, 5580, 4975, 5210, 6320, 5880, 6105, 5420, 5990, 6035]),
    ]
    goals = [
        GoalResult(metric="reply_rate", label="回复率", scope="shop", op=">=", target=0.30, actual=51 / 243,
                   unit="rate", status="missed", baseline=0.313),
        GoalResult(metric="task_completion_rate", label="任务完成率", scope="shop", op=">=", target=0.80,
                   actual=47 / 58, unit="rate", status="met", baseline=0.827),
        GoalResult(metric="completion_rate", label="SOP 完成率", scope="new_customer_nurture", op=">=", target=0.6,
                   actual=17 / 23, unit="rate", status="met", baseline=0.64),
        GoalResult(metric="first_reply_minutes_p50", label="首次回复中位时长", scope="shop", op="<=", target=30,
                   actual=37.5, unit="minutes", status="missed", baseline=27.3),
        GoalResult(metric="checkin_rate", label="社群打卡率", scope="shop", op=">=", target=0.25, actual=None,
                   unit="rate", status="no_data", baseline=None),
    ]
    anomalies = [
        Anomaly(metric="reply_rate", label="回复率", scope="shop", actual=51 / 243, baseline=0.313, change=-0.329,
                volume=243, rule="较前 7 日均值下降超过 25%，且样本量 ≥ 100"),
        Anomaly(metric="drop_off", label="步骤流失率", scope="silent_wakeup", actual=0.267, baseline=0.12,
                change=1.225, volume=120, rule="较前 7 日均值上升超过 50%"),
    ]
    at = datetime(2026, 11, 23, 2, 14, tzinfo=UTC)
    flagged = [
        Flagged(customer_id="c_10293", name="王女士 | VIP", reasons=["投诉", "超过 SLA 未接手"], link="/api/customers/c_10293",
                excerpt=[Line(at=at, direction="in", text=HOSTILE),
                         Line(at=at + timedelta(minutes=1), direction="out",
                              text="非常抱歉给您带来不便，我马上为您转接人工客服。"),
                         Line(at=at + timedelta(minutes=40), direction="in", text="还没人理我？\n再不处理我就差评了")]),
        Flagged(customer_id="c_20811", name="**李先生**", reasons=["低置信回答"], link="/api/customers/c_20811",
                excerpt=[Line(at=at, direction="in", text="孕妇可以喝你们的普洱吗？| 每天喝几杯")]),
    ]
    gaps = [
        Gap(label="孕期能否饮茶", questions=["孕妇可以喝普洱吗", "怀孕了能喝红茶吗 | 急", HOSTILE], count=7, customers=5,
            proposed_faq={"title": "孕期饮茶建议", "text": ""}),
        Gap(label="快递停发地区", questions=["新疆能发货吗", "西藏包邮吗"], count=4, customers=4,
            proposed_faq={"title": "偏远地区发货说明", "text": "新疆、西藏、青海等地区需补邮费 15 元，发货后 5–7 天送达。"}),
    ]
    suggestions = [
        Suggestion(id="sg-1", title="把新客第 1 天消息改到晚上 8 点发送",
                   evidence="近 14 日 20:00–22:00 发送的消息回复率 41.2%，09:00 发送仅 18.5%。",
                   sop_id="new_customer_nurture", step_id="day1_intro", proposed_yaml="id: new_customer_nurture\n",
                   diff=DIFF, validated=True),
        Suggestion(id="sg-2", title="唤醒消息前先确认客户未退订", evidence="沉默唤醒第一步有 32 次发送被联系策略取消。",
                   sop_id="silent_wakeup", step_id="wake_msg", proposed_yaml="id: silent_wakeup\n",
                   diff="--- a/x.yaml\n+++ b/x.yaml\n@@ -1 +1 @@\n-when: always\n+when: subscribed\n", validated=False),
        Suggestion(id="sg-3", title="为“孕期饮茶”补充 FAQ", evidence="7 次提问未能回答。"),
    ]
    comparisons = [
        VersionComparison(sop_id="post_purchase_care", version_before=4, version_after=5, published_on=DAY - timedelta(days=6),
                          before=FunnelSummary(days=7, enrolled=198, completed=141, exited=22, completion_rate=141 / 163,
                                               sent=562, answered=38, answer_rate=38 / 181),
                          after=FunnelSummary(days=6, enrolled=176, completed=133, exited=12, completion_rate=133 / 145,
                                              sent=497, answered=51, answer_rate=51 / 160)),
    ]
    narrative = Narrative(
        text=("今日新增客户 42 位，共发送 376 条消息，回复率 21.0%，低于 30.0% 的目标，已连续 3 天下降。\n"
              "购后关怀 v5 上线后完成率由 86.5% 升至 91.7%；沉默唤醒第一步流失率 26.7%，建议先排查联系策略。"),
        source="llm", checked=True)
    return Report(day=DAY, shop="山间茶舍 · 旗舰店", generated_at=datetime(2026, 11, 23, 16, 5, tzinfo=UTC),
                  metrics=_metrics(), goals=goals, anomalies=anomalies, trends=trends, flagged=flagged, gaps=gaps,
                  suggestions=suggestions, comparisons=comparisons, narrative=narrative)


def empty_report() -> Report:
    """A day on which nothing happened: no SOP ran, nothing was sent, no goal had data."""
    metrics = Metrics(day=DAY, timezone="Asia/Shanghai", attribution=Attribution(rule="下单前 7 天内收到过 SOP 消息"),
                      service=Service(sla_minutes=30))
    return Report(day=DAY, shop="空店", generated_at=datetime(2026, 11, 23, 16, 0, tzinfo=UTC), metrics=metrics,
                  narrative=Narrative(text="", source="offline", checked=True))
