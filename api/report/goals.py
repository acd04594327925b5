"""Goals (``goals.yaml`` in the library), the metric registry they name, baselines, trends and anomalies.

``goals.yaml``::

    handoff_sla_minutes: 10          # a human takes a handoff within this long
    shop:                            # shop-wide goals
      - {metric: reply_rate, min: 0.3}
    sops:                            # per SOP id
      new_customer_nurture:
        - {metric: questionnaire_completion, min: 0.6}
    groups:                          # per group id (groups.yaml)
      vip_group:
        - {metric: checkin_rate, min: 0.3}

Anomaly rule: a metric whose volume (its denominator, or the count itself) is at least ``MIN_VOLUME`` and that has
a baseline (the mean of at least ``MIN_BASELINE_DAYS`` of the previous 7 days) is flagged when it is 25% or more
worse than the baseline — below it for a metric where higher is better, above it (and by at least 3) otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.report.schema import Anomaly, GoalResult, Metrics, Trend, TrendPoint
from knowledge.yaml_lines import YamlError, load_yaml

Scope = Literal["shop", "sop", "group"]
Unit = Literal["rate", "count", "minutes", "yuan"]
MIN_VOLUME = 20
MIN_BASELINE_DAYS = 3
DROP = 0.25
BASELINE_DAYS = 7
TREND_DAYS = 14


@dataclass(frozen=True)
class MetricDef:
    label: str
    unit: Unit
    higher_is_better: bool
    scopes: tuple[Scope, ...]
    value: Callable[[Metrics, str], tuple[float | None, int]]  # (value, volume) for a scope id


def _sum(values: Sequence[int]) -> int:
    return int(sum(values))


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _questionnaire(m: Metrics, scope: str) -> tuple[float | None, int]:
    rows = [q for q in m.questions if scope in ("", q.sop_id)]
    asked = _sum([q.asked for q in rows])
    return _ratio(_sum([min(q.answered, q.asked) for q in rows]), asked), asked


def _funnel(m: Metrics, sop_id: str) -> tuple[int, int, int]:
    rows = [f for f in m.funnels if f.sop_id == sop_id]
    return _sum([f.enrolled for f in rows]), _sum([f.completed for f in rows]), _sum([f.exited for f in rows])


def _checkins(m: Metrics, group: str) -> tuple[float | None, int]:
    rows = [g for g in m.groups if group in ("", g.group)]
    members = _sum([g.members for g in rows])
    return _ratio(_sum([g.checkins for g in rows]), members), members


METRICS: dict[str, MetricDef] = {
    "new_customers": MetricDef("新增客户", "count", True, ("shop",),
                               lambda m, _: (m.new_customers, m.new_customers)),
    "reply_rate": MetricDef("客户回复率", "rate", True, ("shop",),
                            lambda m, _: (m.replies.reply_rate, m.replies.touched)),
    "first_reply_minutes": MetricDef("客户首次回复用时（分钟）", "minutes", False, ("shop",),
                                     lambda m, _: (m.replies.first_reply_minutes_p50, m.replies.replied)),
    "questionnaire_completion": MetricDef("问卷完成率", "rate", True, ("shop", "sop"),
                                          lambda m, s: _questionnaire(m, s)),
    "enrolments": MetricDef("SOP 进入人次", "count", True, ("shop", "sop"),
                            lambda m, s: (_funnel(m, s)[0], _funnel(m, s)[0]) if s else (m.enrolments, m.enrolments)),
    "completion_rate": MetricDef("SOP 完成率", "rate", True, ("sop",),
                                 lambda m, s: (_ratio(_funnel(m, s)[1], _funnel(m, s)[1] + _funnel(m, s)[2]),
                                               _funnel(m, s)[1] + _funnel(m, s)[2])),
    "task_completion": MetricDef("员工任务完成率", "rate", True, ("shop",),
                                 lambda m, _: (m.tasks.completion_rate, m.tasks.created)),
    "tasks_overdue": MetricDef("逾期任务", "count", False, ("shop",), lambda m, _: (m.tasks.overdue, m.tasks.overdue)),
    "checkin_rate": MetricDef("群打卡率", "rate", True, ("shop", "group"), lambda m, g: _checkins(m, g)),
    "handoff_sla_rate": MetricDef("转人工 SLA 达成率", "rate", True, ("shop",),
                                  lambda m, _: (m.service.sla_rate, m.service.within_sla + m.service.breached)),
    "time_to_human_minutes": MetricDef("转人工响应用时（分钟）", "minutes", False, ("shop",),
                                       lambda m, _: (m.service.time_to_human_minutes_p50, m.service.handled)),
    "complaints": MetricDef("投诉客户数", "count", False, ("shop",),
                            lambda m, _: (m.service.complaints, m.service.complaints)),
    "unsubscribes": MetricDef("退订人数", "count", False, ("shop",), lambda m, _: (m.unsubscribes, m.unsubscribes)),
    "unanswered_rate": MetricDef("未能回答的提问占比", "rate", False, ("shop",),
                                 lambda m, _: (_ratio(m.conversations.unanswered, m.conversations.turns),
                                               m.conversations.turns)),
    "coupon_redemption": MetricDef("优惠券核销率", "rate", True, ("shop",),
                                   lambda m, _: (m.coupons.redemption_rate, m.coupons.issued)),
    "orders": MetricDef("支付订单", "count", True, ("shop",), lambda m, _: (m.attribution.orders, m.attribution.orders)),
    "gmv": MetricDef("GMV（元）", "yuan", True, ("shop",), lambda m, _: (m.attribution.gmv, m.attribution.orders)),
    "attributed_gmv": MetricDef("SOP 归因 GMV（元）", "yuan", True, ("shop", "sop"),
                                lambda m, s: ((m.attribution.by_sop[s].gmv, m.attribution.by_sop[s].orders)
                                              if s in m.attribution.by_sop else (0.0, 0)) if s
                                else (m.attribution.attributed_gmv, m.attribution.attributed_orders)),
    "llm_fallback_rate": MetricDef("模型降级占比", "rate", False, ("shop",),
                                   lambda m, _: (_ratio(m.llm.fallbacks, m.conversations.turns),
                                                 m.conversations.turns)),
}
TREND_METRICS = ("new_customers", "reply_rate", "questionnaire_completion", "checkin_rate", "handoff_sla_rate",
                 "unanswered_rate", "gmv")


class Goal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    min: float | None = None
    max: float | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Goal:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(sorted(METRICS))}")
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        return self


class Goals(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handoff_sla_minutes: float = Field(default=10.0, gt=0, le=10_080)
    shop: list[Goal] = Field(default_factory=list)
    sops: dict[str, list[Goal]] = Field(default_factory=dict)
    groups: dict[str, list[Goal]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _scopes(self) -> Goals:
        for scope, goals in (("shop", self.shop), *(("sop", g) for g in self.sops.values()),
                             *(("group", g) for g in self.groups.values())):
            for goal in goals:
                if scope not in METRICS[goal.metric].scopes:
                    raise ValueError(f"metric {goal.metric!r} has no {scope} scope "
                                     f"(it has: {', '.join(METRICS[goal.metric].scopes)})")
        return self


class GoalsError(ValueError):
    """goals.yaml is malformed: the message says where and why."""


def load_goals(library_dir: Path) -> Goals:
    """The library's goals (none when it has no goals.yaml)."""
    path = library_dir / "goals.yaml"
    if not path.is_file():
        return Goals()
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
        return Goals.model_validate(data)
    except YamlError as exc:
        raise GoalsError(f"{path}:{exc.line}: malformed YAML: {exc.reason}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GoalsError(f"{path}: {where}: {first['msg']}") from exc


def value_of(metrics: Metrics, metric: str, scope_id: str = "") -> tuple[float | None, int]:
    return METRICS[metric].value(metrics, scope_id)


def baseline(history: dict[date, Metrics], day: date, metric: str, scope_id: str = "") -> float | None:
    """Mean of the metric over the previous 7 days that have a value (None with fewer than 3)."""
    values = [v for d in range(1, BASELINE_DAYS + 1)
              if (m := history.get(day - timedelta(days=d))) is not None
              and (v := value_of(m, metric, scope_id)[0]) is not None]
    return round(sum(values) / len(values), 4) if len(values) >= MIN_BASELINE_DAYS else None


def evaluate(goals: Goals, metrics: Metrics, history: dict[date, Metrics]) -> list[GoalResult]:
    results = []
    scoped = [("shop", "", g) for g in goals.shop] + [(s, s, g) for s, gs in goals.sops.items() for g in gs] + \
        [(s, s, g) for s, gs in goals.groups.items() for g in gs]
    for scope, scope_id, goal in scoped:
        definition = METRICS[goal.metric]
        actual, _ = value_of(metrics, goal.metric, scope_id)
        op: Literal[">=", "<="] = ">=" if goal.min is not None else "<="
        target = float(goal.min if goal.min is not None else goal.max)  # type: ignore[arg-type]
        status: Literal["met", "missed", "no_data"] = "no_data" if actual is None else \
            "met" if (actual >= target if op == ">=" else actual <= target) else "missed"
        results.append(GoalResult(metric=goal.metric, label=goal.label or definition.label, scope=scope, op=op,
                                  target=target, actual=actual, unit=definition.unit, status=status,
                                  baseline=baseline(history, metrics.day, goal.metric, scope_id)))
    return results


def anomalies(metrics: Metrics, history: dict[date, Metrics]) -> list[Anomaly]:
    """Every metric (and each SOP's and group's) that moved 25% or more the wrong way from its baseline."""
    found = []
    scopes: list[tuple[Scope, str]] = [("shop", "")] + [("sop", f.sop_id) for f in metrics.funnels] + \
        [("group", g.group) for g in metrics.groups]
    seen: set[tuple[str, str]] = set()
    for scope, scope_id in scopes:
        for name, definition in METRICS.items():
            if scope not in definition.scopes or (name, scope_id) in seen:
                continue
            seen.add((name, scope_id))
            actual, volume = value_of(metrics, name, scope_id)
            base = baseline(history, metrics.day, name, scope_id)
            if actual is None or base is None or volume < MIN_VOLUME or base == 0:
                continue
            change = (actual - base) / base
            worse = change <= -DROP if definition.higher_is_better else (change >= DROP and actual - base >= 3)
            if worse:
                found.append(Anomaly(metric=name, label=definition.label, scope=scope_id or "shop", actual=actual,
                                     baseline=base, change=round(change, 4), volume=volume,
                                     rule=f"较近 7 日均值{'下降' if change < 0 else '上升'} {abs(change):.0%}"
                                          f"（阈值 {DROP:.0%}，样本 ≥ {MIN_VOLUME}）"))
    return sorted(found, key=lambda a: a.change if METRICS[a.metric].higher_is_better else -a.change)


def trends(history: dict[date, Metrics], day: date, goals: Goals) -> list[Trend]:
    """The shop's key metrics over the last 14 days, this one included (plus any metric with a shop goal)."""
    names = list(TREND_METRICS) + [g.metric for g in goals.shop if g.metric not in TREND_METRICS]
    days = [day - timedelta(days=d) for d in range(TREND_DAYS - 1, -1, -1)]
    out = []
    for name in names:
        definition = METRICS[name]
        points = [TrendPoint(day=d, value=value_of(history[d], name)[0] if d in history else None) for d in days]
        out.append(Trend(metric=name, label=definition.label, unit=definition.unit, points=points))
    return out
