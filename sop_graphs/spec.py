"""Typed SOP specification: what an operator writes in YAML, checked by pydantic.

An SOP = audience + content + timing + touchpoint + executor. Steps form a graph by id; a step
without ``next`` continues with the step listed after it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sop_graphs.shop_data import IntentBook, Persona, ProfileVocabulary

Family = Literal[
    "nurture", "tagging", "reactivation", "repurchase", "interest_followup", "behaviour",
    "complaint", "group_ops", "launch", "promotion", "livestream", "referral", "moments",
    "conversion",
]
Stage = Literal["new", "active", "customer", "repeat", "silent", "churned"]
Touchpoint = Literal["private", "group", "moments"]
Mode = Literal["kf", "welcome", "member_task", "group_task", "moment_task"]
Executor = Literal["ai", "human"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CustomerEvent = Literal["purchased", "unsubscribed", "replied", "churned", "complained", "delivered",
                        "task_completed"]  # task_completed: an employee completed a task about the customer

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(text: str) -> timedelta:
    """'30m' / '2h' / '3d' / '1w' -> timedelta; raises ValueError naming the text."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration like 30m, 2h, 3d or 1w: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def _check_hhmm(value: str | None) -> str | None:
    if value is not None and not _HHMM.match(value):
        raise ValueError(f"not a HH:MM time: {value!r}")
    return value


Duration = Annotated[str, Field(description="30m, 2h, 3d or 1w")]
HHMM = Annotated[str, Field(description="local shop time HH:MM")]


# ---------------------------------------------------------------- triggers


class _Delay(Strict):
    """When an enrolment starts relative to its triggering event (default: at once)."""

    delay_days: int = Field(default=0, ge=0)
    at: HHMM | None = None
    weekday: Weekday | None = Field(default=None, description="start on the next such weekday")

    _at = field_validator("at")(_check_hhmm)


class CustomerAddedTrigger(_Delay):
    on: Literal["customer_added"]
    channel_codes: list[str] = Field(default_factory=list, description="only these 联系我 state codes")


class ContactImportedTrigger(_Delay):
    """A contact the corp already had, brought in by ``sopagent wecom sync`` (opt-in: imported contacts never fire
    ``customer_added``)."""

    on: Literal["contact_imported"]
    channel_codes: list[str] = Field(default_factory=list, description="only these 联系我 state codes")


class TagTrigger(_Delay):
    on: Literal["tag_added", "tag_removed"]
    tag: str


class SilentTrigger(Strict):
    on: Literal["silent_for"]
    days: int = Field(ge=1)
    at: HHMM = "10:00"

    _at = field_validator("at")(_check_hhmm)


class OrderTrigger(_Delay):
    on: Literal["order_event"]
    event: Literal["paid", "shipped", "delivered", "refunded"]
    first_order_only: bool = False


class IntentTrigger(_Delay):
    on: Literal["message_intent"]
    intents: list[str] = Field(min_length=1)


class BehaviourTrigger(_Delay):
    on: Literal["behaviour"]
    event: str = Field(description="miniprogram_visit, content_read, live_booked, referral_joined, ...")
    weekdays: list[Weekday] = Field(default_factory=list, description="only when it happened on these days")
    match: dict[str, str] = Field(default_factory=dict, description="event attributes that must be equal")


class ScheduleTrigger(Strict):
    on: Literal["schedule"]
    cron: str = Field(description="five-field cron in shop time, e.g. '0 20 * * fri'")


class ManualTrigger(Strict):
    on: Literal["manual"]


Trigger = Annotated[
    CustomerAddedTrigger | ContactImportedTrigger | TagTrigger | SilentTrigger | OrderTrigger | IntentTrigger | BehaviourTrigger
    | ScheduleTrigger | ManualTrigger,
    Field(discriminator="on"),
]


# ---------------------------------------------------------------- audience, exit, goal


class Audience(Strict):
    tags_all: list[str] = Field(default_factory=list)
    tags_any: list[str] = Field(default_factory=list)
    tags_none: list[str] = Field(default_factory=list)
    stages: list[Stage] = Field(default_factory=list)
    attributes: dict[str, list[str]] = Field(default_factory=dict, description="profile key -> allowed values")
    channel_codes: list[str] = Field(default_factory=list)


class ExitCondition(Strict):
    event: CustomerEvent | None = None
    tag: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ExitCondition:
        if (self.event is None) == (self.tag is None):
            raise ValueError("an exit condition names exactly one of event or tag")
        return self


class Outcome(Strict):
    """Actions applied when a run ends (completed or exited)."""

    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    switch_to: str | None = Field(default=None, description="enrol the customer in this SOP next")


class Exit(Outcome):
    when: list[ExitCondition] = Field(default_factory=list)


class Kpi(Strict):
    name: str
    target: float
    unit: str = "%"


class Defaults(Strict):
    touchpoint: Touchpoint = "private"
    mode: Mode = "member_task"
    executor: Executor | None = None


# ---------------------------------------------------------------- steps


class _Step(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str | None = None
    next: str | None = None


class _Outbound(_Step):
    touchpoint: Touchpoint | None = None
    mode: Mode | None = None
    executor: Executor | None = None
    marketing: bool | None = Field(default=None, description="default: true unless replying to the customer")
    expires_after: Duration | None = Field(default=None, description="cancel instead of sending later than this")
    priority: int = Field(default=0, ge=0, le=9, description=(
        "time-critical content (a live reminder, a coupon about to expire): when the daily cap binds, generic "
        "content (0) leaves today's remaining slots to it"))

    _expires = field_validator("expires_after")(_check_duration)


class Variant(Strict):
    """Content used instead of the default when the customer's tags match."""

    tags_any: list[str] = Field(default_factory=list)
    tags_all: list[str] = Field(default_factory=list)
    text: str | None = None
    material: str | None = None

    @model_validator(mode="after")
    def _content(self) -> Variant:
        if (self.text is None) == (self.material is None):
            raise ValueError("a variant has exactly one of text or material")
        if not self.tags_any and not self.tags_all:
            raise ValueError("a variant needs tags_any or tags_all")
        return self


class MessageStep(_Outbound):
    kind: Literal["message"]
    text: str | None = None
    material: str | None = None
    variants: list[Variant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _content(self) -> MessageStep:
        if (self.text is None) == (self.material is None):
            raise ValueError("a message has exactly one of text or material")
        return self


class Choice(Strict):
    value: str
    synonyms: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list, description="regexes for descriptive answers (normalised text)")
    description: str = ""
    tags: list[str] = Field(default_factory=list, description="tags added when this choice is answered")


class Answer(Strict):
    type: Literal["choice", "number", "text", "phone", "date", "order"]
    options: list[Choice] = Field(default_factory=list)
    multiple: bool = False
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _options(self) -> Answer:
        if self.type == "choice" and len(self.options) < 2:
            raise ValueError("a choice answer needs at least two options")
        if self.type != "choice" and self.options:
            raise ValueError(f"options only apply to choice answers, not {self.type}")
        return self


class AskStep(_Outbound):
    kind: Literal["ask"]
    question: str
    slot: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="profile attribute the answer is stored as")
    answer: Answer
    reask: str | None = Field(default=None, description="said before the question on an invalid answer")
    max_attempts: int = Field(default=2, ge=1, le=5)
    skippable: bool = Field(default=True, description="'跳过' / '不想说' moves on without an answer")
    timeout: Duration = "24h"
    on_timeout: str | None = Field(default=None, description="step after no answer; default next")
    on_invalid: str | None = Field(default=None, description="step after max attempts; default next")
    prefill: Literal["message", "order"] | None = Field(
        default=None, description="answered by the message that started the run: 'message' = an incident's own "
        "description, 'order' = an order/tracking number or phone written in it")

    _timeout = field_validator("timeout")(_check_duration)


class GroupInviteStep(_Outbound):
    kind: Literal["group_invite"]
    group: str
    text: str


class CouponStep(_Outbound):
    kind: Literal["coupon"]
    campaign: str
    text: str


class TagStep(_Step):
    kind: Literal["tag"]
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> TagStep:
        if not self.add and not self.remove:
            raise ValueError("a tag step adds or removes at least one tag")
        return self


class WaitStep(_Step):
    """Exactly one timing form: ``for``; ``day`` (+``at``); ``weekday`` + ``at``; ``at``; ``until_event``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["wait"]
    for_: Duration | None = Field(default=None, alias="for")
    day: int | None = Field(default=None, ge=0, le=365, description="day N after the customer was added")
    weekday: Weekday | None = None
    at: HHMM | None = None
    until_event: CustomerEvent | None = None
    timeout: Duration | None = None
    on_timeout: str | None = None

    _d = field_validator("for_", "timeout")(_check_duration)
    _t = field_validator("at")(_check_hhmm)

    @model_validator(mode="after")
    def _one_form(self) -> WaitStep:
        forms = [self.for_ is not None, self.day is not None, self.weekday is not None,
                 self.until_event is not None]
        if sum(forms) > 1:
            raise ValueError("a wait uses one of: for, day, weekday, until_event")
        if sum(forms) == 0 and self.at is None:
            raise ValueError("a wait needs for, day, weekday, at or until_event")
        if self.weekday is not None and self.at is None:
            raise ValueError("a weekday wait needs at: HH:MM")
        if self.until_event is not None and self.timeout is None:
            raise ValueError("an until_event wait needs a timeout")
        if self.until_event is None and (self.timeout or self.on_timeout):
            raise ValueError("timeout and on_timeout apply only to until_event waits")
        if self.for_ is not None and self.at is not None:
            raise ValueError("a 'for' wait cannot also set at")
        return self

    @property
    def timed(self) -> bool:
        return self.until_event is None


class Case(Strict):
    when: str
    goto: str


class BranchStep(_Step):
    kind: Literal["branch"]
    cases: list[Case] = Field(min_length=1)
    default: str


class HandoffStep(_Step):
    kind: Literal["handoff"]
    assignee_role: str
    title: str
    instructions: str
    due_in: Duration = "4h"
    pause_bot: bool = False

    _d = field_validator("due_in")(_check_duration)


class ChatStep(_Step):
    kind: Literal["chat"]
    opening: str | None = None
    until_intents: list[str] = Field(default_factory=lambda: ["bye", "thanks"])
    timeout: Duration = "24h"

    _d = field_validator("timeout")(_check_duration)


class EndStep(_Step):
    kind: Literal["end"]
    outcome: Outcome = Field(default_factory=Outcome)


Step = Annotated[
    MessageStep | AskStep | GroupInviteStep | CouponStep | TagStep | WaitStep | BranchStep
    | HandoffStep | ChatStep | EndStep,
    Field(discriminator="kind"),
]


class SopSpec(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    version: int = Field(default=1, ge=1)
    family: Family
    goal: str
    kpis: list[Kpi] = Field(default_factory=list)
    enabled: bool = True
    triggers: list[Trigger] = Field(min_length=1)
    audience: Audience = Field(default_factory=Audience)
    exit: Exit = Field(default_factory=Exit)
    defaults: Defaults = Field(default_factory=Defaults)
    suppresses_marketing: bool = Field(default=False, description="while active, other marketing waits")
    reenrol_after_days: int | None = Field(default=None, ge=1, description="default: enrol once per trigger")
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Any:
        return self.steps_by_id[step_id]

    @property
    def grants_coupons(self) -> bool:
        return any(isinstance(s, CouponStep) for s in self.steps)

    @property
    def sends_marketing(self) -> bool:
        """Some outbound step may be marketing (``marketing`` not set false): an opted-out customer never enters."""
        return any(isinstance(s, _Outbound) and s.marketing is not False for s in self.steps)

    @property
    def steps_by_id(self) -> dict[str, Any]:
        return {s.id: s for s in self.steps}

    def successor(self, index: int) -> str | None:
        """The step a step at ``index`` continues with when it names no ``next``."""
        step = self.steps[index]
        if step.next:
            return step.next
        return self.steps[index + 1].id if index + 1 < len(self.steps) else None


# ---------------------------------------------------------------- content libraries


class Material(Strict):
    type: Literal["text", "image", "link", "miniprogram", "file", "video"] = "text"
    title: str
    text: str
    url: str | None = None


class Campaign(Strict):
    name: str
    amount: float = Field(gt=0, description="yuan off")
    threshold: float = Field(default=0, ge=0, description="minimum order in yuan")
    valid_days: int = Field(default=7, ge=1)
    budget: int | None = Field(default=None, ge=1, description="maximum coupons issued")


class Group(Strict):
    name: str
    qr_url: str
    rules: str = ""


class TagRule(Strict):
    """Puts ``tag`` on a customer when a message matches: any keyword, any intent, or a slot answer."""

    tag: str
    keywords: list[str] = Field(default_factory=list)
    intents: list[str] = Field(default_factory=list)
    slot: str | None = Field(default=None, description="profile fact key, e.g. skin_type")
    values: list[str] = Field(default_factory=list, description="fact values that give the tag")
    confidence: float = Field(default=0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _has_condition(self) -> TagRule:
        if not (self.keywords or self.intents or (self.slot and self.values)):
            raise ValueError("a rule needs keywords, intents, or slot + values")
        return self


class TagGroup(Strict):
    name: str
    tags: list[str] = Field(min_length=1)
    exclusive: bool = False
    model_settable: bool = Field(default=False, description="the LLM's understanding may set these tags (customer "
                                 "attributes such as 肤质/诉求); operational tags are set by rules and SOPs only")
    rules: list[TagRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules_use_own_tags(self) -> TagGroup:
        unknown = [r.tag for r in self.rules if r.tag not in self.tags]
        if unknown:
            raise ValueError(f"rules name tags outside this group: {', '.join(unknown)}")
        return self


class Catalog(Strict):
    """Everything SOP steps may reference by id."""

    materials: dict[str, Material] = Field(default_factory=dict)
    campaigns: dict[str, Campaign] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(default_factory=dict)
    tag_groups: dict[str, TagGroup] = Field(default_factory=dict)
    intents: IntentBook = Field(default_factory=IntentBook)
    profile: ProfileVocabulary = Field(default_factory=ProfileVocabulary)
    persona: Persona = Field(default_factory=Persona)
    replies: dict[str, str] = Field(default_factory=dict, description="话术 templates by name")
    spec_words: dict[str, list[str]] = Field(default_factory=dict, description="spec label -> words asking for it")
    typos: dict[str, str] = Field(default_factory=dict, description="how shoppers misspell the shop's words -> the word")

    @property
    def tags(self) -> set[str]:
        return {t for g in self.tag_groups.values() for t in g.tags}
