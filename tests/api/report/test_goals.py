"""Goals against actuals, the 7-day baseline, the anomaly rule and the trends."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from api.report.goals import Goals, GoalsError, anomalies, evaluate, load_goals, trends
from api.report.schema import Attribution, GroupStat, Metrics, Replies, Service

DAY = date(2026, 11, 25)


def day_metrics(day: date, *, touched: int = 100, replied: int = 40, members: int = 50, checkins: int = 20,
                unsubscribes: int = 1) -> Metrics:
    return Metrics(day=day, timezone="Asia/Shanghai", attribution=Attribution(rule="r"),
                   service=Service(sla_minutes=10),
                   replies=Replies(touched=touched, replied=replied, reply_rate=replied / touched if touched else None),
                   groups=[GroupStat(group="vip_group", name="群", members=members, checkins=checkins,
                                     checkin_rate=checkins / members if members else None)],
                   unsubscribes=unsubscribes)


def week_before(**kwargs: int) -> dict[date, Metrics]:
    return {DAY - timedelta(days=d): day_metrics(DAY - timedelta(days=d), **kwargs) for d in range(1, 8)}


def test_a_goal_is_met_missed_or_without_data_and_carries_its_baseline() -> None:
    goals = Goals.model_validate({"shop": [{"metric": "reply_rate", "min": 0.3}, {"metric": "unsubscribes", "max": 0},
                                           {"metric": "handoff_sla_rate", "min": 0.9}]})
    history = week_before()
    results = evaluate(goals, day_metrics(DAY, replied=35), history)
    assert [(r.metric, r.status) for r in results] == [("reply_rate", "met"), ("unsubscribes", "missed"),
                                                       ("handoff_sla_rate", "no_data")]
    assert results[0].actual == 0.35 and results[0].baseline == 0.4 and results[0].op == ">="


def test_a_group_goal_reads_that_groups_rate() -> None:
    goals = Goals.model_validate({"groups": {"vip_group": [{"metric": "checkin_rate", "min": 0.3}]}})
    (result,) = evaluate(goals, day_metrics(DAY, checkins=10), {})
    assert (result.scope, result.actual, result.status, result.baseline) == ("vip_group", 0.2, "missed", None)


def test_a_check_in_rate_a_quarter_below_its_baseline_is_an_anomaly() -> None:
    found = anomalies(day_metrics(DAY, checkins=14), week_before(checkins=20))  # 28% vs 40%
    (dip,) = [a for a in found if a.metric == "checkin_rate" and a.scope == "vip_group"]
    assert dip.baseline == 0.4 and dip.change == -0.3 and "30%" in dip.rule


def test_a_drop_on_too_few_customers_is_not_an_anomaly() -> None:
    found = anomalies(day_metrics(DAY, members=10, checkins=1), week_before(members=10, checkins=5))
    assert not [a for a in found if a.metric == "checkin_rate"]


def test_a_smaller_drop_than_a_quarter_is_not_an_anomaly() -> None:
    found = anomalies(day_metrics(DAY, checkins=16), week_before(checkins=20))  # 20% below
    assert not [a for a in found if a.metric == "checkin_rate"]


def test_a_count_that_should_stay_low_is_an_anomaly_when_it_rises() -> None:
    found = anomalies(day_metrics(DAY, unsubscribes=30), week_before(unsubscribes=20))
    assert [a.metric for a in found if a.metric == "unsubscribes"] == ["unsubscribes"]


def test_no_baseline_without_three_days_of_history() -> None:
    history = {DAY - timedelta(days=1): day_metrics(DAY - timedelta(days=1), checkins=40)}
    assert not anomalies(day_metrics(DAY, checkins=5), history)


def test_trends_cover_14_days_with_gaps_where_there_is_no_data() -> None:
    history = week_before() | {DAY: day_metrics(DAY)}
    (reply,) = [t for t in trends(history, DAY, Goals()) if t.metric == "reply_rate"]
    assert len(reply.points) == 14 and reply.points[-1].day == DAY
    assert [p.value for p in reply.points[:6]] == [None] * 6 and reply.points[-1].value == 0.4


@pytest.mark.parametrize(("text", "says"), [
    ("shop:\n  - {metric: happiness, min: 1}\n", "unknown metric 'happiness'"),
    ("shop:\n  - {metric: reply_rate, min: 0.3, max: 0.9}\n", "exactly one of min or max"),
    ("groups:\n  vip_group:\n    - {metric: reply_rate, min: 0.3}\n", "has no group scope"),
    ("shop: [\n", "malformed YAML"),
])
def test_a_bad_goals_file_is_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "goals.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(GoalsError, match=says):
        load_goals(tmp_path)


def test_the_bundled_goals_load_and_name_known_sops_and_groups() -> None:
    from tests.api.report.fixtures import library

    lib = library()
    goals = load_goals(Path(__file__).resolve().parents[3] / "sop_graphs" / "library")
    assert goals.shop and set(goals.sops) <= set(lib.sops) and set(goals.groups) <= set(lib.catalog.groups)


def test_another_shops_goals_are_its_own_data() -> None:
    tea = Path(__file__).resolve().parents[3] / "knowledge" / "tea_shop" / "library"
    goals = load_goals(tea)
    assert goals.handoff_sla_minutes == 15 and set(goals.groups) == {"tea_club"}
