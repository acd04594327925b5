"""From customer events to SOP runs: trigger matching, audience filters, exits and run endings.

Events never start graphs directly: they schedule ``enrol`` due rows (keyed per SOP, customer and
trigger occurrence), so an event processed twice enrols once and a crash loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from knowledge.clock import as_utc, parse_hhmm
from knowledge.db import any_of, insert_many, run_in
from sop_graphs.customers import (
    BROADCAST,
    WEB_CHANNEL,
    WEB_PREFIX,
    load_customer,
    load_customers,
    tags_of_many,
    write_tags,
)
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects
from sop_graphs.relevance import asks_only_unused, unused_slots
from sop_graphs.spec import (
    WEEKDAYS,
    Audience,
    BehaviourTrigger,
    ContactImportedTrigger,
    CustomerAddedTrigger,
    IntentTrigger,
    OrderTrigger,
    Outcome,
    SopSpec,
    TagTrigger,
)
from sop_graphs.tables import DueTouchpoint, Outbox, PendingThread, SopRun

_R = SopRun.__table__.c
_D = DueTouchpoint.__table__.c
_O = Outbox.__table__.c
LIVE = ("active", "scheduled")
_LIVE_RUNS = select(_R.id, _R.sop_id).where(_R.customer_id == bindparam("cid"), _R.status.in_(LIVE))
_RUN_STATUS_IN = select(_R.id, _R.status).where(any_of(_R.id))
_RUN_HEADS_IN = select(_R.id, _R.customer_id, _R.sop_id, _R.status).where(any_of(_R.id))
_LIVE_FAMILIES_IN = select(_R.customer_id, _R.family, _R.id).where(_R.status.in_(LIVE), any_of(_R.customer_id))
_PREVIOUS_IN = (select(_R.customer_id, _R.sop_id, func.max(_R.started_at)).where(any_of(_R.customer_id))
                .group_by(_R.customer_id, _R.sop_id))
_END_RUN = update(SopRun.__table__).where(_R.id == bindparam("rid"))
_FORGET_PENDING_IN = PendingThread.__table__.delete().where(any_of(PendingThread.__table__.c.run_id))
_CANCEL_DUE = update(DueTouchpoint.__table__).where(_D.run_id == bindparam("rid"), _D.status == "pending")


@dataclass(frozen=True)
class CustomerEvent:
    """Something that happened to a customer that SOP triggers may react to."""

    kind: str  # customer_added, tag_added, tag_removed, order_event, message_intent, behaviour
    key: str  # unique per occurrence, part of the enrolment key
    at: datetime
    attrs: dict[str, Any] = field(default_factory=dict)


def audience_matches(audience: Audience, customer: dict[str, Any], tags: set[str]) -> bool:
    if audience.tags_all and not set(audience.tags_all) <= tags:
        return False
    if audience.tags_any and not set(audience.tags_any) & tags:
        return False
    if set(audience.tags_none) & tags:
        return False
    if audience.stages and customer.get("stage") not in audience.stages:
        return False
    if audience.channel_codes and customer.get("channel_code") not in audience.channel_codes:
        return False
    attributes = customer.get("attributes") or {}
    return all(str(attributes.get(key)) in [str(v) for v in allowed] for key, allowed in audience.attributes.items())


def _trigger_matches(trigger: Any, event: CustomerEvent, customer: dict[str, Any], deps: Deps) -> bool:
    attrs = event.attrs
    match trigger:
        case CustomerAddedTrigger():
            return event.kind == "customer_added" and (
                not trigger.channel_codes or customer.get("channel_code") in trigger.channel_codes)
        case ContactImportedTrigger():
            return event.kind == "contact_imported" and (
                not trigger.channel_codes or customer.get("channel_code") in trigger.channel_codes)
        case TagTrigger():
            return event.kind == trigger.on and attrs.get("tag") == trigger.tag
        case OrderTrigger():
            if event.kind != "order_event" or attrs.get("event") != trigger.event:
                return False
            return not trigger.first_order_only or (customer.get("orders_count") or 0) <= 1
        case IntentTrigger():
            return event.kind == "message_intent" and attrs.get("intent") in trigger.intents
        case BehaviourTrigger():
            if event.kind != "behaviour" or attrs.get("event") != trigger.event:
                return False
            if trigger.weekdays and WEEKDAYS[deps.shop.local(event.at).weekday()] not in trigger.weekdays:
                return False
            return all(str(attrs.get(k)) == v for k, v in trigger.match.items())
    return False


def start_time(trigger: Any, event_at: datetime, deps: Deps) -> datetime:
    """When a delayed trigger's enrolment starts: weekday, day N at HH:MM, or at once."""
    at: time | None = parse_hhmm(trigger.at) if getattr(trigger, "at", None) else None
    if getattr(trigger, "weekday", None):
        return deps.shop.next_weekday_at(event_at, WEEKDAYS.index(trigger.weekday), at or time(10, 0))
    delay = getattr(trigger, "delay_days", 0)
    if at is not None:
        return max(deps.shop.day_n_at(event_at, delay, at), as_utc(event_at))
    return as_utc(event_at) + timedelta(days=delay)


def fire(conn: Connection, deps: Deps, effects: Effects, customer_id: str, event: CustomerEvent) -> list[str]:
    """Schedule enrolments of every enabled SOP a customer event triggers; returns their SOP ids."""
    customer = load_customer(conn, customer_id)
    if customer is None or customer["stage"] == "churned":
        return []
    enrolled = []
    unused = unused_slots(conn, deps.library.catalog.profile)
    for spec in deps.library.sops.values():
        if not spec.enabled or asks_only_unused(spec, unused):  # a skin questionnaire in an appliance shop
            continue
        for trigger in spec.triggers:
            if _trigger_matches(trigger, event, customer, deps):
                due = start_time(trigger, event.at, deps)
                detail = event.attrs.get("tag") or event.attrs.get("event") or event.attrs.get("intent") or ""
                # an enrolment that starts at once from the customer's own action answers that action
                reply = event.kind in ("customer_added", "message_intent") and due <= as_utc(event.at)
                schedule_enrolment(effects, spec, customer_id, trigger_key=event.key, due_at=due,
                                   reason=f"{event.kind}:{detail}".rstrip(":"), reply=reply)
                enrolled.append(spec.id)
                break
    return enrolled


def schedule_enrolment(effects: Effects, spec: SopSpec, customer_id: str, *, trigger_key: str, due_at: datetime,
                       reason: str, reply: bool = False) -> None:
    effects.schedule(key=f"enrol/{spec.id}/{customer_id}/{trigger_key}", kind="enrol", due_at=due_at,
                     customer_id=customer_id, sop_id=spec.id,
                     payload={"trigger_key": trigger_key, "reason": reason, "reply": reply})


@dataclass(frozen=True)
class Entry:
    """A customer asking to enter a SOP: which SOP, who, which trigger occurrence, and why (for the timeline)."""

    spec: SopSpec
    customer_id: str
    trigger_key: str
    reason: str

    @property
    def run_id(self) -> str:
        return f"{self.spec.id}/{self.customer_id}/{self.trigger_key}"


@dataclass(frozen=True)
class Admission:
    """The outcome of an entry: the live run (None if refused or already ended), and whether it is new."""

    run_id: str | None
    new: bool = False


def admit_many(conn: Connection, effects: Effects, entries: list[Entry], at: datetime,
               customers: dict[str, dict[str, Any]] | None = None) -> list[Admission]:
    """Create the run rows of the entries that may enter their SOP now, with one query per rule.

    Entries are decided in order, as one at a time would be: a customer listed twice for one family
    is refused the second time (the first run now owns the family). Refusals go on the timeline.
    ``customers``: the entries' customer rows when the caller already read them in this transaction.
    """
    ids = [e.customer_id for e in entries if e.customer_id != BROADCAST]
    existing = run_statuses(conn, [e.run_id for e in entries])
    if customers is None:
        customers = load_customers(conn, ids)
    tags = tags_of_many(conn, ids)
    owners = {(cid, family): run_id for cid, family, run_id in run_in(conn, _LIVE_FAMILIES_IN, ids)}
    previous = {(cid, sop_id): started for cid, sop_id, started in run_in(conn, _PREVIOUS_IN, ids)}
    admitted: list[Admission] = []
    new_runs = []
    for entry in entries:
        spec, cid, run_id = entry.spec, entry.customer_id, entry.run_id
        if run_id in existing:
            admitted.append(Admission(run_id if existing[run_id] in LIVE else None))
            continue
        if cid != BROADCAST:
            why_not = _refusal(spec, customers.get(cid), tags.get(cid, set()), owners.get((cid, spec.family)),
                               previous.get((cid, spec.id)), at)
            if why_not:
                effects.note(customer_id=cid, at=at, kind="skipped", summary=f"未进入「{spec.name}」：{why_not}",
                             key=f"skip/{run_id}", detail={"sop": spec.id, "reason": why_not})
                admitted.append(Admission(None))
                continue
            owners[(cid, spec.family)], previous[(cid, spec.id)] = run_id, as_utc(at)
        existing[run_id] = "active"
        new_runs.append({"id": run_id, "sop_id": spec.id, "sop_version": spec.version, "family": spec.family,
                         "customer_id": cid, "status": "active", "trigger": entry.reason, "started_at": as_utc(at)})
        effects.note(customer_id=cid, at=at, kind="enrolled", summary=f"进入 SOP「{spec.name}」（{entry.reason}）",
                     run_id=run_id, key=f"enrolled/{run_id}", detail={"sop": spec.id})
        admitted.append(Admission(run_id, new=True))
    if new_runs:
        insert_many(conn, SopRun.__table__, new_runs)
    return admitted


def run_statuses(conn: Connection, run_ids: list[str]) -> dict[str, str]:
    """Status of each existing run among ``run_ids``."""
    return {run_id: status for run_id, status in run_in(conn, _RUN_STATUS_IN, run_ids)}


def _refusal(spec: SopSpec, customer: dict[str, Any] | None, tags: set[str], owner: str | None,
             previous: datetime | None, at: datetime) -> str | None:
    if customer is None:
        return "unknown customer"
    if customer["stage"] == "churned":
        return "customer deleted us"
    if customer.get("unsubscribed_at") is not None and spec.sends_marketing:
        return "customer unsubscribed from marketing"
    if str(customer.get("id", "")).startswith(WEB_PREFIX) and spec.grants_coupons and \
            WEB_CHANNEL not in spec.audience.channel_codes:
        # an anonymous web session costs nothing to open: coupons only where the SOP's audience names "web"
        return "anonymous web visitor: coupon SOPs need audience channel_codes [web]"
    if not audience_matches(spec.audience, customer, tags):
        return "not in the audience"
    if owner is not None:
        return f"already in a {spec.family} SOP ({owner})"
    if previous is not None:
        if spec.reenrol_after_days is None:
            return "already went through this SOP"
        if as_utc(at) - as_utc(previous) < timedelta(days=spec.reenrol_after_days):
            return f"re-enrolment allowed after {spec.reenrol_after_days} days"
    return None


@dataclass(frozen=True)
class Ending:
    """How a run ends: completed (its last actions still go out) or exited (pending actions cancelled)."""

    run_id: str
    status: str
    reason: str
    outcome: Outcome
    at: datetime


def finish_run(conn: Connection, deps: Deps, effects: Effects, run_id: str, *, status: str, reason: str,
               outcome: Outcome, at: datetime) -> bool:
    """End a live run: cancel what it still had pending, apply its outcome. False if already ended."""
    return bool(finish_runs(conn, deps, effects, [Ending(run_id, status, reason, outcome, at)]))


def finish_runs(conn: Connection, deps: Deps, effects: Effects, endings: list[Ending]) -> list[str]:
    """:func:`finish_run` for many runs, with one statement per kind of write; returns the runs ended.

    Runs ending together end together: an outcome tag of one that is another's exit condition does
    not turn that other run, which reached its own end at the same moment, into an exit.
    """
    heads = {row.id: row for row in run_in(conn, _RUN_HEADS_IN, [e.run_id for e in endings])}
    ended: dict[str, Ending] = {}
    for ending in endings:
        head = heads.get(ending.run_id)
        if head is not None and head.status in LIVE and ending.run_id not in ended:
            ended[ending.run_id] = ending
    if not ended:
        return []
    conn.execute(_END_RUN, [{"rid": e.run_id, "status": e.status, "ended_at": as_utc(e.at), "exit_reason": e.reason,
                             "waiting": None, "waiting_kind": None} for e in ended.values()])
    conn.execute(_CANCEL_DUE, [{"rid": e.run_id, "status": "cancelled", "done_at": as_utc(e.at)}
                               for e in ended.values()])
    run_in(conn, _FORGET_PENDING_IN, list(ended))  # a run ended before anything resumed it never needs its thread
    effects.ended.update(ended)
    for run_id, ending in ended.items():
        customer_id, sop_id = heads[run_id].customer_id, heads[run_id].sop_id
        cancelled = 0
        if ending.status == "exited":  # a completed run's last actions still go out; an exited run's do not
            cancelled = conn.execute(update(Outbox.__table__).where(_O.run_id == run_id, _O.status == "pending")
                                     .values(status="cancelled", last_deferral=f"run exited: {ending.reason}")
                                     ).rowcount
        spec = deps.library.sops.get(sop_id)
        name = spec.name if spec else sop_id
        verb = "完成" if ending.status == "completed" else "退出"
        effects.note(customer_id=customer_id, at=ending.at, kind=ending.status, run_id=run_id,
                     key=f"{ending.status}/{run_id}",
                     summary=f"{verb} SOP「{name}」（{ending.reason}）" + (f"，取消 {cancelled} 条未发送动作" if cancelled else ""),
                     detail={"sop": sop_id, "reason": ending.reason, "cancelled": cancelled})
        outcome = ending.outcome
        if customer_id != BROADCAST:
            change_tags(conn, deps, effects, customer_id, outcome.add_tags, outcome.remove_tags,
                        source=f"{ending.status}/{run_id}", at=ending.at, run_id=run_id)
        if outcome.switch_to and outcome.switch_to in deps.library.sops:
            schedule_enrolment(effects, deps.library.sops[outcome.switch_to], customer_id,
                               trigger_key=f"after-{sop_id}", due_at=ending.at, reason=f"switch from {sop_id}")
    return list(ended)


def exit_runs(conn: Connection, deps: Deps, effects: Effects, customer_id: str, *, at: datetime,
              event: str | None = None, tag: str | None = None, keep_run: str | None = None) -> list[str]:
    """Exit every live run of the customer whose SOP exits on ``event`` or on ``tag`` being present."""
    exited = []
    for run_id, sop_id in conn.execute(_LIVE_RUNS, {"cid": customer_id}).all():
        spec = deps.library.sops.get(sop_id)
        if spec is None or run_id == keep_run:
            continue
        hit = any((event is not None and c.event == event) or (tag is not None and c.tag == tag)
                  for c in spec.exit.when)
        if hit and finish_run(conn, deps, effects, run_id, status="exited", reason=event or f"tag {tag}",
                              outcome=spec.exit, at=at):
            exited.append(run_id)
    return exited


def change_tags(conn: Connection, deps: Deps, effects: Effects, customer_id: str, add: list[str],
                remove: list[str], *, source: str, at: datetime, run_id: str | None = None) -> None:
    """Write tags, then fire tag triggers and tag exit conditions."""
    if not add and not remove:
        return
    added, removed = write_tags(conn, effects, deps.library.catalog, customer_id, add, remove, source=source,
                                at=at, run_id=run_id)
    listeners = deps.library.tag_listeners
    for tag in added:
        if ("tag_added", tag) in listeners:
            fire(conn, deps, effects, customer_id, CustomerEvent("tag_added", f"tag+{tag}@{source}", at, {"tag": tag}))
        if ("exit", tag) in listeners:
            exit_runs(conn, deps, effects, customer_id, at=at, tag=tag, keep_run=run_id)
    for tag in removed:
        if ("tag_removed", tag) in listeners:
            fire(conn, deps, effects, customer_id, CustomerEvent("tag_removed", f"tag-{tag}@{source}", at, {"tag": tag}))

