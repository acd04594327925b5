"""The daily review report as data: every view (JSON, Markdown, HTML, the narrative, the operators' summary)
is rendered from one :class:`Report`. Numbers are plain values; rates are fractions in [0, 1] (None when the
denominator is 0); minutes are floats; dates are shop-local."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field


class StepFunnel(BaseModel):
    """One step of one SOP version on the day: how many runs reached it and what became of them."""

    step_id: str
    kind: str
    reached: int = 0  # actions created for the step (sent, deferred, cancelled or still pending)
    sent: int = 0
    answered: int | None = None  # ask steps: answers recorded for the step's question
    dropped: int = 0  # cancelled by the contact policy, or the run exited here
    drop_off: float | None = None  # share of those reaching this step that did not reach the next one


class SopFunnel(BaseModel):
    sop_id: str
    name: str
    version: int
    enrolled: int = 0  # runs started on the day
    active: int = 0  # runs under way at the end of the day
    completed: int = 0
    exited: int = 0
    exit_reasons: dict[str, int] = Field(default_factory=dict)
    completion_rate: float | None = None  # completed / (completed + exited) among runs that ended on the day
    steps: list[StepFunnel] = Field(default_factory=list)


class Sends(BaseModel):
    total: int = 0
    marketing: int = 0
    by_mode: dict[str, int] = Field(default_factory=dict)
    by_touchpoint: dict[str, int] = Field(default_factory=dict)
    by_executor: dict[str, int] = Field(default_factory=dict)  # ai, or employee (a task a person sends)
    deferred: int = 0
    cancelled: int = 0
    deferrals_by_reason: dict[str, int] = Field(default_factory=dict)
    cancellations_by_reason: dict[str, int] = Field(default_factory=dict)


class Tasks(BaseModel):
    created: int = 0
    done: int = 0
    overdue: int = 0  # open past their due time at the end of the day
    completion_rate: float | None = None
    by_kind: dict[str, int] = Field(default_factory=dict)


class Replies(BaseModel):
    """Customers we messaged on the day, and whether they wrote back within 24 h."""

    touched: int = 0
    replied: int = 0
    reply_rate: float | None = None
    first_reply_minutes_p50: float | None = None
    inbound_messages: int = 0
    customers_writing: int = 0
    bot_reply_seconds_p50: float | None = None  # customer message → our reply


class QuestionStat(BaseModel):
    sop_id: str
    step_id: str
    slot: str
    asked: int = 0
    answered: int = 0
    completion: float | None = None


class Coupons(BaseModel):
    issued: int = 0
    by_campaign: dict[str, int] = Field(default_factory=dict)
    redeemed: int = 0  # orders on the day that name an issued coupon's code
    redemption_rate: float | None = None


class SopAttribution(BaseModel):
    orders: int = 0
    gmv: float = 0.0


class Attribution(BaseModel):
    rule: str
    orders: int = 0  # all orders created on the day
    gmv: float = 0.0
    attributed_orders: int = 0
    attributed_gmv: float = 0.0
    by_sop: dict[str, SopAttribution] = Field(default_factory=dict)


class Service(BaseModel):
    """Complaints and handoffs: how fast a human took them, against the SLA."""

    complaints: int = 0
    handoffs: int = 0
    sla_minutes: float
    handled: int = 0
    within_sla: int = 0
    breached: int = 0  # handled late, or still open past the SLA
    time_to_human_minutes_p50: float | None = None
    sla_rate: float | None = None


class GroupStat(BaseModel):
    group: str
    name: str
    members: int = 0
    checkins: int = 0
    checkin_rate: float | None = None


class Conversations(BaseModel):
    turns: int = 0
    unanswered: int = 0  # replies the agent could not ground in facts
    low_confidence: int = 0
    handed_off: int = 0


class Llm(BaseModel):
    turns_by_model: int = 0
    fallbacks: int = 0  # turns the offline brain answered although a model is configured
    errors: int = 0  # turns whose model call failed
    rejected: int = 0  # model replies the guardrails refused
    calls: int = 0
    tokens: int = 0


class Metrics(BaseModel):
    """One shop day, computed from the database."""

    day: date
    timezone: str
    customers_total: int = 0
    new_customers: int = 0
    new_by_channel: dict[str, int] = Field(default_factory=dict)
    new_by_owner: dict[str, int] = Field(default_factory=dict)
    enrolments: int = 0
    funnels: list[SopFunnel] = Field(default_factory=list)
    sends: Sends = Field(default_factory=Sends)
    tasks: Tasks = Field(default_factory=Tasks)
    replies: Replies = Field(default_factory=Replies)
    questions: list[QuestionStat] = Field(default_factory=list)
    coupons: Coupons = Field(default_factory=Coupons)
    attribution: Attribution
    service: Service
    unsubscribes: int = 0
    deletions: int = 0
    groups: list[GroupStat] = Field(default_factory=list)
    conversations: Conversations = Field(default_factory=Conversations)
    llm: Llm = Field(default_factory=Llm)


GoalStatus = Literal["met", "missed", "no_data"]


class GoalResult(BaseModel):
    metric: str
    label: str
    scope: str  # "shop", or an SOP id
    op: Literal[">=", "<="]
    target: float
    actual: float | None
    unit: Literal["rate", "count", "minutes", "yuan"]
    status: GoalStatus
    baseline: float | None = None  # mean of the previous 7 days that have data


class Anomaly(BaseModel):
    metric: str
    label: str
    scope: str
    actual: float
    baseline: float
    change: float  # (actual - baseline) / baseline
    volume: int  # the denominator behind ``actual``
    rule: str


class TrendPoint(BaseModel):
    day: date
    value: float | None


class Trend(BaseModel):
    metric: str
    label: str
    unit: Literal["rate", "count", "minutes", "yuan"]
    points: list[TrendPoint]


class Line(BaseModel):
    at: datetime
    direction: Literal["in", "out"]
    text: str


class Flagged(BaseModel):
    customer_id: str
    name: str
    reasons: list[str]
    excerpt: list[Line]
    link: str  # the operator API's page of the customer


class Gap(BaseModel):
    """Questions the agent could not answer, clustered by meaning, with an FAQ entry for the operator to fill."""

    label: str
    questions: list[str]
    count: int
    customers: int
    proposed_faq: dict[str, str]  # {"title": ..., "text": ...}


class Suggestion(BaseModel):
    id: str
    title: str
    evidence: str
    sop_id: str | None = None
    step_id: str | None = None
    proposed_yaml: str | None = None  # the whole SOP file with the change
    diff: str | None = None  # unified diff against the published version
    validated: bool = False  # proposed_yaml passes `sopagent sop validate`


class FunnelSummary(BaseModel):
    days: int
    enrolled: int
    completed: int
    exited: int
    completion_rate: float | None
    sent: int
    answered: int
    answer_rate: float | None


class VersionComparison(BaseModel):
    """An SOP version published inside the window: its funnel before and after."""

    sop_id: str
    version_before: int
    version_after: int
    published_on: date
    before: FunnelSummary
    after: FunnelSummary


class Narrative(BaseModel):
    text: str
    source: Literal["llm", "offline"]
    checked: bool  # every number in text matched the facts (always true offline)
    note: str | None = None  # why an LLM narrative was not used


class Report(BaseModel):
    day: date
    shop: str
    generated_at: datetime
    metrics: Metrics
    goals: list[GoalResult] = Field(default_factory=list)
    anomalies: list[Anomaly] = Field(default_factory=list)
    trends: list[Trend] = Field(default_factory=list)  # the last 14 days, this one included
    flagged: list[Flagged] = Field(default_factory=list)
    gaps: list[Gap] = Field(default_factory=list)
    suggestions: list[Suggestion] = Field(default_factory=list)
    comparisons: list[VersionComparison] = Field(default_factory=list)
    narrative: Narrative
