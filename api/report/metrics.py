"""One shop day's metrics, computed from the database: a pure function of (database, library, day, timezone).

The day is the shop's local calendar day ``[00:00, 24:00)``. Definitions (stated once, here and in the README):

- *new customers*: customers added on the day, by 联系我 channel code and by owner.
- *funnel*: per SOP and version (the version a run started with), per action step: *reached* = actions created
  for it on the day, *sent*, *dropped* = cancelled by the contact policy plus runs that exited at that step,
  *answered* (ask steps) = answers recorded for it; *drop-off* compares a step's reach with the next step's.
- *sends*: actions sent on the day by mode, touchpoint and executor; deferrals and cancellations by reason.
- *replies*: customers who got a message on the day, and of those the ones who wrote back within 24 h.
- *attribution*: an order paid on the day counts for the SOP that last sent its customer something in the 7 days
  before it (last touch), if any.
- *service*: complaints and handoff tasks created on the day; a human took one when its task was done; the SLA
  is the goals file's ``handoff_sla_minutes``.
- *groups*: members of a group at the end of the day (joined, not left) and the share that checked in that day.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from agent.inbound import ESCAPES
from agent.tables import InboundEvent, Message
from api.report.schema import (
    Attribution,
    Conversations,
    Coupons,
    GroupStat,
    Llm,
    Metrics,
    QuestionStat,
    Replies,
    Sends,
    Service,
    SopAttribution,
    SopFunnel,
    StepFunnel,
    Tasks,
)
from knowledge.clock import ShopTime, as_utc
from knowledge.tables import Customer, TimelineEntry
from sop_graphs.loader import Library
from sop_graphs.tables import CouponLedger, EmployeeTask, Outbox, SopRun

ATTRIBUTION_DAYS = 7
ATTRIBUTION_RULE = f"最后触达：订单支付前 {ATTRIBUTION_DAYS} 天内最后一次给该客户发送内容的 SOP 获得归因"
REPLY_WINDOW = timedelta(hours=24)
LOW_CONFIDENCE = 0.5
CUSTOMER_FACING = ("message", "ask", "group_invite", "coupon")
# WeCom sends an employee confirms or makes (群发助手, group and moments tasks, to-dos); the rest the AI sends itself
EMPLOYEE_MODES = ("member_task", "group_task", "moment_task", "task")
COMPLAINT_INTENTS = tuple(sorted(ESCAPES - {"human"}))  # the incidents and complaints the agent escalates

_O, _R, _T = Outbox.__table__.c, SopRun.__table__.c, TimelineEntry.__table__.c
_M, _I, _K = Message.__table__.c, InboundEvent.__table__.c, EmployeeTask.__table__.c
_C, _L = Customer.__table__.c, CouponLedger.__table__.c


def day_window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants where the shop's local ``day`` begins and ends."""
    shop = ShopTime(timezone)
    return shop.at(day, time(0)), shop.at(day + timedelta(days=1), time(0))


def rate(part: int | float, whole: int | float) -> float | None:
    return round(part / whole, 4) if whole else None


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(statistics.median(values), 2) if values else None


def compute(conn: Connection, library: Library, day: date, timezone: str, *, sla_minutes: float = 10.0,
            now: datetime | None = None) -> Metrics:
    """The metrics of the shop's local ``day``; ``now`` (default: the day's end) bounds what counts as overdue."""
    start, end = day_window(day, timezone)
    now = min(as_utc(now), end) if now is not None else end
    metrics = Metrics(day=day, timezone=timezone, attribution=Attribution(rule=ATTRIBUTION_RULE),
                      service=Service(sla_minutes=sla_minutes))
    _customers(conn, metrics, start, end)
    _funnels(conn, library, metrics, start, end)
    _sends(conn, metrics, start, end)
    _tasks(conn, metrics, start, end, now)
    _replies(conn, metrics, start, end)
    _questions(conn, library, metrics, start, end)
    _coupons_and_orders(conn, metrics, start, end)
    _service(conn, library, metrics, start, end, now)
    _groups(conn, library, metrics, start, end)
    _conversations(conn, library, metrics, start, end)
    return metrics


def _customers(conn: Connection, m: Metrics, start: datetime, end: datetime) -> None:
    m.customers_total = conn.execute(select(func.count()).where(_C.added_at < end)).scalar() or 0
    rows = conn.execute(select(_C.channel_code, _C.owner, func.count()).where(_C.added_at >= start, _C.added_at < end)
                        .group_by(_C.channel_code, _C.owner)).all()
    channels: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    for channel, owner, n in rows:
        channels[channel or "（无渠道码）"] += n
        owners[owner or "（未分配）"] += n
    m.new_customers = sum(channels.values())
    m.new_by_channel, m.new_by_owner = dict(channels.most_common()), dict(owners.most_common())
    m.unsubscribes = conn.execute(select(func.count()).where(_C.unsubscribed_at >= start,
                                                             _C.unsubscribed_at < end)).scalar() or 0
    m.deletions = conn.execute(select(func.count(func.distinct(_I.customer_id))).where(
        _I.kind == "customer_deleted", _I.received_at >= start, _I.received_at < end)).scalar() or 0


def _funnels(conn: Connection, library: Library, m: Metrics, start: datetime, end: datetime) -> None:
    enrolled = conn.execute(select(_R.sop_id, _R.sop_version, func.count()).where(
        _R.started_at >= start, _R.started_at < end).group_by(_R.sop_id, _R.sop_version)).all()
    ended = conn.execute(select(_R.sop_id, _R.sop_version, _R.status, _R.exit_reason, _R.current_step, func.count())
                         .where(_R.ended_at >= start, _R.ended_at < end)
                         .group_by(_R.sop_id, _R.sop_version, _R.status, _R.exit_reason, _R.current_step)).all()
    active = conn.execute(select(_R.sop_id, _R.sop_version, func.count()).where(
        _R.started_at < end, or_(_R.ended_at.is_(None), _R.ended_at >= end)).group_by(_R.sop_id, _R.sop_version)).all()
    actions = conn.execute(select(_R.sop_id, _R.sop_version, _O.step_id, _O.status, func.count())
                           .select_from(Outbox.__table__.join(SopRun.__table__, _R.id == _O.run_id))
                           .where(_O.created_at >= start, _O.created_at < end)
                           .group_by(_R.sop_id, _R.sop_version, _O.step_id, _O.status)).all()
    answers = _answers_by_step(conn, start, end)
    funnels: dict[tuple[str, int], SopFunnel] = {}

    def funnel(sop_id: str, version: int) -> SopFunnel:
        key = (sop_id, int(version))
        if key not in funnels:
            spec = library.sops.get(sop_id)
            funnels[key] = SopFunnel(sop_id=sop_id, name=spec.name if spec else sop_id, version=int(version))
        return funnels[key]

    for sop_id, version, n in enrolled:
        funnel(sop_id, version).enrolled += n
    for sop_id, version, n in active:
        funnel(sop_id, version).active += n
    exits_at: dict[tuple[str, int, str], int] = Counter()
    for sop_id, version, status, reason, step, n in ended:
        f = funnel(sop_id, version)
        if status == "completed":
            f.completed += n
        elif status == "exited":
            f.exited += n
            f.exit_reasons[reason or "未注明"] = f.exit_reasons.get(reason or "未注明", 0) + n
            if step:
                exits_at[(sop_id, int(version), step)] += n
    steps: dict[tuple[str, int], dict[str, StepFunnel]] = defaultdict(dict)
    for sop_id, version, step_id, status, n in actions:
        if not step_id:
            continue
        f = funnel(sop_id, version)
        spec = library.sops.get(sop_id)
        kinds = {s.id: s.kind for s in spec.steps} if spec else {}
        row = steps[(f.sop_id, f.version)].setdefault(step_id, StepFunnel(step_id=step_id, kind=kinds.get(step_id, "")))
        row.reached += n
        row.sent += n if status == "sent" else 0
        row.dropped += n if status == "cancelled" else 0
    for (sop_id, version), rows in steps.items():
        spec = library.sops.get(sop_id)
        order = {s.id: i for i, s in enumerate(spec.steps)} if spec else {}
        ordered = sorted(rows.values(), key=lambda r: (order.get(r.step_id, 10_000), r.step_id))
        for row in ordered:
            row.dropped += exits_at.get((sop_id, version, row.step_id), 0)
            if row.kind == "ask":
                row.answered = answers.get((sop_id, version, row.step_id), 0)
        for row, following in zip(ordered, ordered[1:], strict=False):
            row.drop_off = round(max(0.0, 1 - following.reached / row.reached), 4) if row.reached else None
        funnels[(sop_id, version)].steps = ordered
    for f in funnels.values():
        f.completion_rate = rate(f.completed, f.completed + f.exited)
    m.funnels = sorted(funnels.values(), key=lambda f: (f.sop_id, f.version))
    m.enrolments = sum(f.enrolled for f in m.funnels)


def _answers_by_step(conn: Connection, start: datetime, end: datetime) -> Counter[tuple[str, int, str]]:
    """Answers recorded on the day, by (SOP, version, ask step): the timeline keys them run/step/visit/answer."""
    rows = conn.execute(select(_T.key, _T.run_id, _R.sop_id, _R.sop_version)
                        .select_from(TimelineEntry.__table__.join(SopRun.__table__, _R.id == _T.run_id))
                        .where(_T.kind == "answer", _T.at >= start, _T.at < end, _T.key.like("%/answer"))).all()
    counts: Counter[tuple[str, int, str]] = Counter()
    for key, run_id, sop_id, version in rows:
        step = str(key)[len(run_id) + 1:].split("/")[0]
        counts[(sop_id, int(version), step)] += 1
    return counts


def _sends(conn: Connection, m: Metrics, start: datetime, end: datetime) -> None:
    s = Sends()
    for mode, touchpoint, executor, marketing, n in conn.execute(
            select(_O.mode, _O.touchpoint, _O.executor, _O.marketing, func.count())
            .where(_O.status == "sent", _O.sent_at >= start, _O.sent_at < end, _O.action.in_(CUSTOMER_FACING))
            .group_by(_O.mode, _O.touchpoint, _O.executor, _O.marketing)).all():
        s.total += n
        s.marketing += n if marketing else 0
        s.by_mode[mode] = s.by_mode.get(mode, 0) + n
        s.by_touchpoint[touchpoint] = s.by_touchpoint.get(touchpoint, 0) + n
        who = "employee" if executor in ("human", "employee") or mode in EMPLOYEE_MODES else "ai"
        s.by_executor[who] = s.by_executor.get(who, 0) + n
    for kind, detail, summary in conn.execute(select(_T.kind, _T.detail, _T.summary).where(
            _T.kind.in_(("deferred", "cancelled")), _T.at >= start, _T.at < end)).all():
        reason = _reason(detail, summary)
        if kind == "deferred":
            s.deferred += 1
            s.deferrals_by_reason[reason] = s.deferrals_by_reason.get(reason, 0) + 1
        else:
            s.cancelled += 1
            s.cancellations_by_reason[reason] = s.cancellations_by_reason.get(reason, 0) + 1
    s.deferrals_by_reason = dict(Counter(s.deferrals_by_reason).most_common())
    s.cancellations_by_reason = dict(Counter(s.cancellations_by_reason).most_common())
    m.sends = s


def _reason(detail: dict[str, Any] | None, summary: str) -> str:
    reason = (detail or {}).get("reason") or (summary.rsplit("（", 1)[-1].rstrip("）") if "（" in summary else "")
    return str(reason).split(";")[0].strip() or "未注明"


def _tasks(conn: Connection, m: Metrics, start: datetime, end: datetime, now: datetime) -> None:
    t = Tasks()
    for kind, status, done_at, n in conn.execute(select(_K.kind, _K.status, _K.done_at, func.count()).where(
            _K.created_at >= start, _K.created_at < end).group_by(_K.kind, _K.status, _K.done_at)).all():
        t.created += n
        t.by_kind[kind] = t.by_kind.get(kind, 0) + n
        t.done += n if status == "done" and (done_at is None or as_utc(done_at) < end) else 0
    t.overdue = conn.execute(select(func.count()).where(
        _K.created_at < end, _K.due_at < now,
        or_(_K.status == "open", and_(_K.status == "done", _K.done_at > now)))).scalar() or 0
    t.completion_rate = rate(t.done, t.created)
    m.tasks = t


def _replies(conn: Connection, m: Metrics, start: datetime, end: datetime) -> None:
    r = Replies()
    touched = dict(conn.execute(select(_O.customer_id, func.min(_O.sent_at)).where(
        _O.status == "sent", _O.sent_at >= start, _O.sent_at < end, _O.action.in_(CUSTOMER_FACING),
        _O.key.not_like("reply/%")).group_by(_O.customer_id)).all())
    inbound = conn.execute(select(_M.customer_id, _M.at, _M.key).where(
        _M.direction == "in", _M.at >= start, _M.at < end + REPLY_WINDOW).order_by(_M.at)).all()
    first_after: dict[str, datetime] = {}
    for cid, at, _ in inbound:
        sent = touched.get(cid)
        if sent is not None and cid not in first_after and as_utc(sent) <= as_utc(at) <= as_utc(sent) + REPLY_WINDOW:
            first_after[cid] = as_utc(at)
    r.touched, r.replied = len(touched), len(first_after)
    r.reply_rate = rate(r.replied, r.touched)
    r.first_reply_minutes_p50 = median((at - as_utc(touched[cid])).total_seconds() / 60
                                       for cid, at in first_after.items())
    today = [(cid, as_utc(at), key) for cid, at, key in inbound if as_utc(at) < end]
    r.inbound_messages = len(today)
    r.customers_writing = len({cid for cid, _, _ in today})
    replies = dict(conn.execute(select(_M.key, _M.at).where(
        _M.direction == "out", _M.at >= start, _M.at < end + timedelta(hours=1), _M.key.like("out/%"))).all())
    waits = []
    for _, at, key in today:
        out = replies.get(f"out/{str(key).removeprefix('in/')}")
        if out is not None:
            waits.append(max(0.0, (as_utc(out) - at).total_seconds()))
    r.bot_reply_seconds_p50 = median(waits)
    m.replies = r


def _questions(conn: Connection, library: Library, m: Metrics, start: datetime, end: datetime) -> None:
    asked = conn.execute(select(_O.sop_id, _O.step_id, func.count()).where(
        _O.action == "ask", _O.status == "sent", _O.sent_at >= start, _O.sent_at < end)
        .group_by(_O.sop_id, _O.step_id)).all()
    answered: Counter[tuple[str, str]] = Counter()
    for (sop_id, _, step), n in _answers_by_step(conn, start, end).items():
        answered[(sop_id, step)] += n
    stats = []
    for sop_id, step_id, n in asked:
        spec = library.sops.get(sop_id or "")
        step = next((s for s in spec.steps if s.id == step_id), None) if spec else None
        got = answered.get((sop_id, step_id), 0)
        stats.append(QuestionStat(sop_id=sop_id or "", step_id=step_id or "", slot=getattr(step, "slot", "") or "",
                                  asked=n, answered=got, completion=rate(min(got, n), n)))
    m.questions = sorted(stats, key=lambda q: (q.sop_id, q.step_id))


def _coupons_and_orders(conn: Connection, m: Metrics, start: datetime, end: datetime) -> None:
    c = Coupons()
    for campaign, n in conn.execute(select(_L.campaign_id, func.count()).where(
            _L.issued_at >= start, _L.issued_at < end).group_by(_L.campaign_id)).all():
        c.issued += n
        c.by_campaign[campaign] = n
    paid = [(cid, as_utc(at), payload) for cid, at, payload in conn.execute(
        select(_I.customer_id, _I.received_at, _I.payload).where(
            _I.kind == "order", _I.received_at >= start, _I.received_at < end, _I.status == "done")).all()
        if (payload or {}).get("event", "paid") == "paid"]
    codes = [str(p.get("coupon")) for _, _, p in paid if p.get("coupon")]
    if codes:
        issued = {(cid, code) for cid, code in conn.execute(select(_L.customer_id, _L.code).where(_L.code.in_(codes)))}
        c.redeemed = sum((cid, str(p.get("coupon"))) in issued for cid, _, p in paid if p.get("coupon"))
    c.redemption_rate = rate(c.redeemed, c.issued)
    m.coupons = c
    a = m.attribution
    customers = sorted({cid for cid, _, _ in paid})
    touches: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for i in range(0, len(customers), 500):
        for cid, at, sop_id in conn.execute(select(_O.customer_id, _O.sent_at, _O.sop_id).where(
                _O.customer_id.in_(customers[i:i + 500]), _O.status == "sent", _O.sop_id.is_not(None),
                _O.sent_at >= start - timedelta(days=ATTRIBUTION_DAYS), _O.sent_at < end,
                _O.action.in_(CUSTOMER_FACING))).all():
            touches[cid].append((as_utc(at), sop_id))
    for cid, at, payload in paid:
        amount = _amount(payload.get("amount"))
        a.orders += 1
        a.gmv += amount
        before = [t for t in touches.get(cid, []) if at - timedelta(days=ATTRIBUTION_DAYS) <= t[0] <= at]
        if before:
            sop_id = max(before)[1]
            a.attributed_orders += 1
            a.attributed_gmv += amount
            entry = a.by_sop.setdefault(sop_id, SopAttribution())
            entry.orders += 1
            entry.gmv = round(entry.gmv + amount, 2)
    a.gmv, a.attributed_gmv = round(a.gmv, 2), round(a.attributed_gmv, 2)


def _amount(value: Any) -> float:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return 0.0
    return amount if 0 <= amount < 1e9 else 0.0


def _service(conn: Connection, library: Library, m: Metrics, start: datetime, end: datetime, now: datetime) -> None:
    s = m.service  # complaints are counted with the day's turns (_conversations)
    waits = []
    for created, done_at, status in conn.execute(select(_K.created_at, _K.done_at, _K.status).where(
            _K.kind == "handoff", _K.created_at >= start, _K.created_at < end)).all():
        s.handoffs += 1
        limit = as_utc(created) + timedelta(minutes=s.sla_minutes)
        if status == "done" and done_at is not None and as_utc(done_at) <= now:
            s.handled += 1
            minutes = (as_utc(done_at) - as_utc(created)).total_seconds() / 60
            waits.append(minutes)
            s.within_sla += minutes <= s.sla_minutes
            s.breached += minutes > s.sla_minutes
        elif now > limit:
            s.breached += 1
    s.time_to_human_minutes_p50 = median(waits)
    s.sla_rate = rate(s.within_sla, s.within_sla + s.breached)


def _groups(conn: Connection, library: Library, m: Metrics, start: datetime, end: datetime) -> None:
    members: dict[str, set[str]] = defaultdict(set)
    checked: dict[str, set[str]] = defaultdict(set)
    rows = conn.execute(select(_I.customer_id, _I.received_at, _I.payload).where(
        _I.kind == "behaviour", _I.received_at < end, _I.status == "done").order_by(_I.received_at, _I.id))
    for cid, at, payload in rows:
        event, group = (payload or {}).get("event"), (payload or {}).get("group") or (payload or {}).get("chat_id")
        if not group:
            continue
        if event == "group_joined":
            members[group].add(cid)
        elif event == "group_left":
            members[group].discard(cid)
        elif event == "group_checkin" and as_utc(at) >= start:
            checked[group].add(cid)
    groups = library.catalog.groups
    stats = []
    for group in sorted(set(members) | set(checked)):
        info = groups.get(group)
        name = getattr(info, "name", None) or group
        count = len(members[group] | checked[group])
        stats.append(GroupStat(group=group, name=name, members=count, checkins=len(checked[group]),
                               checkin_rate=rate(len(checked[group]), count)))
    m.groups = stats


def _conversations(conn: Connection, library: Library, m: Metrics, start: datetime, end: datetime) -> None:
    """The day's turns (one scan of the replies): answered or not, confidence, the model's part, and the
    customers whose message was a complaint (the service metrics' complaints)."""
    c, llm = Conversations(), Llm()
    intents = library.catalog.intents
    complaint_intents = set(COMPLAINT_INTENTS) | {i for i in intents.names if "complaint" in intents.groups_of(i)}
    complainers: set[str] = set()
    for cid, meta in conn.execute(select(_M.customer_id, _M.meta).where(
            _M.direction == "out", _M.at >= start, _M.at < end, _M.key.like("out/%"))).all():
        meta = meta or {}
        if "intent" not in meta:
            continue
        if meta["intent"] in complaint_intents:
            complainers.add(cid)
        c.turns += 1
        c.unanswered += meta.get("grounded") is False
        c.low_confidence += float(meta.get("confidence") or 0) < LOW_CONFIDENCE
        brain = meta.get("brain")
        llm.turns_by_model += brain not in (None, "offline")
        llm.errors += bool(meta.get("llm_failed"))
        llm.rejected += bool(meta.get("llm_rejected"))
        llm.fallbacks += bool(meta.get("llm_failed") or meta.get("llm_rejected"))
        llm.calls += int(meta.get("llm_calls") or 0)
        llm.tokens += int(meta.get("llm_tokens") or 0)
    c.handed_off = conn.execute(select(func.count()).where(_T.kind == "handoff", _T.at >= start, _T.at < end)
                                ).scalar() or 0
    m.conversations, m.llm = c, llm
    m.service.complaints = len(complainers)
