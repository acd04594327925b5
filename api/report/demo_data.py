"""Demo data for the daily review report: days of a shop played through the real pipeline.

:func:`play` drives a :class:`~agent.runtime.Runtime` on a simulated clock the way a shop's life would: new
customers arrive through WeCom 联系我 codes, chat, answer (or ignore) the questions SOPs ask, ask what the
shop's knowledge cannot answer, complain, unsubscribe, delete us, order (sometimes with a coupon an SOP gave
them), join groups and check in, while employees work their tasks and an operator publishes a new version of
one SOP mid-way. Every customer action is an inbound event (``agent.inbound.submit``); SOP steps, deferrals,
replies and the contact policy happen for real as the clock advances (``Runtime.run_until``).

What shoppers say and the shop-side words (names, channels, employees, the SOP edit, carriers) live in
``demo_messages.yaml`` beside this module; this module holds only the behaviour model (rates and timing).
The play is deterministic for a seed: planning draws from ``random.Random(seed)`` in a fixed order, and every
reaction to the pipeline's state (a question asked, a task created, a coupon issued, an invite sent) draws
from its own generator keyed by the seed and that entity, never from the wall clock.

Days are numbered from 1 (day 1 is the shop-local date of ``start``).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
import re
import time as wall
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from agent import memory
from agent.inbound import submit
from agent.runtime import Runtime
from agent.tables import InboundEvent, Message
from agent.tasks import announce_done, mark_done
from api import audit
from api.tables import SopVersion
from knowledge.clock import as_utc
from knowledge.db import init_db, upsert
from knowledge.tables import Customer, Product, Shipment, ShopOrder
from knowledge.yaml_lines import load_yaml
from sop_graphs.actions import release_handoff
from sop_graphs.effects import Effects
from sop_graphs.enrolment import LIVE
from sop_graphs.loader import load_sop_text, with_sop
from sop_graphs.spec import AskStep
from sop_graphs.tables import CouponLedger, EmployeeTask, Outbox, SopRun
from sop_graphs.validator import validate

DATA_FILE = Path(__file__).with_name("demo_messages.yaml")

# ---------------------------------------------------------------------- the behaviour model
POLL = timedelta(minutes=10)  # how often the shop's state is looked at for things to react to
OPENING_MESSAGE = 0.45  # a new customer writes within minutes of adding us
CHATTINESS = ((0.06, 40), (0.16, 40), (0.35, 20))  # daily chance of a conversation (value, weight)
AGE_DECAY = 0.25  # the chance falls as 1 / (1 + decay * days since added)
FOLLOW_UP = 0.3  # a second message in the same conversation ("好的谢谢")
SECOND_QUESTION = 0.15
COOPERATION = ((0.92, 45), (0.55, 30), (0.12, 25))  # chance of answering an SOP question (value, weight)
VAGUE_ANSWER = 0.08
TOPICS = {"product": 30, "faq": 10, "promotion": 5, "gap": 16, "smalltalk": 8, "human": 2, "angry": 1.5}
TOPICS_WITH_ORDER = {"order": 12}
TOPICS_AFTER_DELIVERY = {"after_delivery": 6}
UNSUBSCRIBERS = 0.04
DELETERS = 0.03
ANGRY_ONCE = 0.02
BUY_AFTER_PRODUCT_QUESTION = 0.06
SPONTANEOUS_BUYERS = 0.12  # customers who order on their own at some point (no coupon)
BUYER_DAILY = 0.12  # their daily chance of doing it, until they have
COUPON_REDEEMED = 0.06
COMPLAINERS = 0.2  # of buyers, complain after delivery
AFTER_SALES_ARRIVALS = 0.04  # add us to complain about an order bought elsewhere (no order number of ours)
REFUND_AFTER_COMPLAINT = 0.35
JOIN_FROM_INVITE = 0.45
JOIN_ON_ARRIVAL = 0.35  # customers of a channel that names a group
LEAVE_GROUP = 0.07
CHECKIN_RATE = (0.30, 0.45)  # share of members checking in on a day (drawn per day; exact count)
DIP_FACTOR = 0.5  # on the dip day, this share of the day's usual check-ins
BEHAVIOURS = {"live_booked": 0.02, "content_read": 0.015, "miniprogram_visit": 0.04}  # per customer and day
HANDOFF_WORK = ((0.70, (5, 20)), (0.18, (60, 480)))  # (share, minutes): quick, late; the rest stay open
SEND_TASK_WORK = ((0.85, (10, 300)),)
WORK_DAY = (time(9, 0), time(21, 30))  # employees complete tasks in these local hours
NIGHT = (time(1, 0), time(7, 30))  # customers do not act then


@dataclass
class PlaySummary:
    """What a play did: counts of what the simulated shop sent in, and what the pipeline made of it."""

    days: int
    start: datetime
    end: datetime
    seed: int
    customers: int = 0  # customer_added events
    messages: int = 0  # customer messages (answers to SOP questions included)
    answers: int = 0  # of those, answers to a question an SOP asked
    gap_questions: int = 0  # of those, questions the shop's knowledge has no entry for
    complaints: int = 0  # of those, incident messages about an order
    unsubscribes: int = 0
    deletions: int = 0
    orders: int = 0  # paid
    coupon_orders: int = 0  # paid with a coupon an SOP issued
    gmv: float = 0.0
    order_events: int = 0  # shipped, delivered, refunded
    group_joins: int = 0
    group_leaves: int = 0
    checkins: int = 0
    checkins_by_day: dict[int, int] = field(default_factory=dict)
    checkin_rate_by_day: dict[int, float] = field(default_factory=dict)  # check-ins / members that day
    behaviours: int = 0  # other behaviour events (live booking, mini-program visit, content read)
    tasks_created: int = 0
    tasks_completed: int = 0
    tasks_open: int = 0
    replies: int = 0  # messages the agent wrote back in conversations
    unanswered: int = 0  # of those, replies not grounded in facts
    sop_edits: int = 0
    published: list[str] = field(default_factory=list)  # "sop_id@version" published during the play
    events: int = 0  # inbound events the play submitted (task completions excluded)
    digest: str = ""  # sha256 of every inbound event of the database, see :func:`inbound_digest`
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


@dataclass
class _Order:
    id: str
    paid_at: datetime
    amount: float
    items: list[dict[str, Any]]
    delivered_at: datetime | None = None


@dataclass
class _Shopper:
    id: str
    name: str
    channel: dict[str, Any]
    owner: str
    arrival: datetime
    chattiness: float
    cooperation: float
    buyer: bool
    complainer: bool
    angry: bool
    after_sales: bool
    unsubscribe_at: datetime | None = None
    delete_at: datetime | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    orders: list[_Order] = field(default_factory=list)
    joined: dict[str, datetime] = field(default_factory=dict)
    left: dict[str, datetime] = field(default_factory=dict)
    complained: bool = False

    def present(self, at: datetime) -> bool:
        return self.arrival <= at and (self.delete_at is None or at < self.delete_at)

    def member(self, group: str, at: datetime) -> bool:
        joined, left = self.joined.get(group), self.left.get(group)
        return joined is not None and joined < at and (left is None or left > at) and self.present(at)


@dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    customer: str = field(compare=False, default="")
    kind: str = field(compare=False, default="")
    payload: dict[str, Any] = field(compare=False, default_factory=dict)
    call: Callable[[], None] | None = field(compare=False, default=None)
    before: Callable[[], None] | None = field(compare=False, default=None)  # shop-side record written with it
    label: str = field(compare=False, default="")  # what a message is, for the summary (answer, gap …)


def load_data(path: Path = DATA_FILE) -> dict[str, Any]:
    """The shopper data file (names, channels, chat pools, answers, the SOP edit …) through the safe loader."""
    data = load_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def inbound_digest(runtime: Runtime) -> str:
    """sha256 over every inbound event (key, customer, kind, payload, time) in time order: equal for equal plays."""
    table = InboundEvent.__table__
    c = table.c
    digest = hashlib.sha256()
    with runtime.deps.engine.connect() as conn:
        for key, cid, kind, payload, at in conn.execute(select(c.key, c.customer_id, c.kind, c.payload, c.received_at)
                                                        .order_by(c.received_at, c.key)):
            digest.update(json.dumps([key, cid, kind, payload, as_utc(at).isoformat()], ensure_ascii=False,
                                     sort_keys=True).encode())
    return digest.hexdigest()


def play(runtime: Runtime, *, days: int = 14, customers: int = 300, seed: int = 7, start: datetime | None = None,
         progress: Callable[[str], None] | None = None, dip_day: int = 9, edit_day: int | None = None,
         data: dict[str, Any] | None = None) -> PlaySummary:
    """Play ``days`` shop days with ``customers`` new customers through ``runtime`` (a simulated clock).

    ``start`` defaults to the clock's now (pass a shop-local midnight for a whole first day); the clock ends at
    the local midnight after the last day. Check-ins fall to about half on ``dip_day``; the SOP edit of the data
    file is published on ``edit_day`` (default: the file's ``sop_edit.day``; 0 = no edit). Deterministic for
    ``seed``. Loads the demo shop when the catalogue is empty."""
    if days < 1 or customers < 0:
        raise ValueError("days must be >= 1 and customers >= 0")
    return _Play(runtime, days=days, customers=customers, seed=seed, start=start, progress=progress,
                 dip_day=dip_day, edit_day=edit_day, data=data or load_data()).run()


class _Play:
    def __init__(self, runtime: Runtime, *, days: int, customers: int, seed: int, start: datetime | None,
                 progress: Callable[[str], None] | None, dip_day: int, edit_day: int | None,
                 data: dict[str, Any]) -> None:
        self.runtime = runtime
        self.deps = runtime.deps
        self.shop = runtime.deps.shop
        self.data = data
        self.seed = seed
        self.rng = random.Random(seed)
        self.progress = progress
        self.dip_day = dip_day
        edit = data.get("sop_edit") or {}
        self.edit_day = int(edit.get("day", 0)) if edit_day is None else edit_day
        clock_now = as_utc(runtime.deps.clock.now())
        self.start = as_utc(start) if start is not None else clock_now
        if self.start < clock_now:
            raise ValueError(f"start {self.start.isoformat()} is before the clock's now {clock_now.isoformat()}")
        self.first_day = self.shop.local_date(self.start)
        self.days = days
        self.end = self.shop.at(self.first_day + timedelta(days=days), time(0, 0))
        self.n_customers = customers
        self.summary = PlaySummary(days=days, start=self.start, end=self.end, seed=seed)
        self.heap: list[_Due] = []
        self.seq = 0
        self.sent = 0
        self.prefix = f"play/{seed}/{self.start:%Y%m%dT%H%M}"
        self.shoppers: dict[str, _Shopper] = {}
        self.order_numbers: Counter[date] = Counter()
        self.seen_asks: set[tuple[str, str]] = set()
        self.last_poll = self.start
        self.last_task = 0
        self.last_coupon = 0
        self.seen_invites: set[int] = set()
        self.edited_version: dict[str, int] = {}
        self.day_counts: Counter[str] = Counter()
        self.members_by_day: dict[int, int] = {}
        self.began = 0.0
        self.products: list[dict[str, Any]] = []
        hours = data.get("hours") or {h: 1 for h in range(8, 24)}
        self.hours = [(int(h), float(w)) for h, w in hours.items()]

    # ------------------------------------------------------------------ driving the clock

    def run(self) -> PlaySummary:
        self.began = wall.perf_counter()
        init_db(self.deps.engine)  # the operator tables (SOP versions, audit) when the runtime was built without
        self.runtime.load_demo_shop()
        self.products = self._products()
        if self.start > as_utc(self.deps.clock.now()):
            self.runtime.run_until(self.start)
        self._make_shoppers()
        for day in range(1, self.days + 1):
            midnight = self.shop.at(self._date(day), time(0, 0))
            self._call(max(midnight, self.start), lambda d=day: self._plan_day(d))
            self._call(self.shop.at(self._date(day), time(23, 59, 59)), lambda d=day: self._day_done(d))
        if 1 <= self.edit_day <= self.days and self.data.get("sop_edit"):
            at = _hhmm(str(self.data["sop_edit"].get("at", "10:00")))
            self._call(max(self.shop.at(self._date(self.edit_day), at), self.start), self._publish_edit)
        self._call(self.start + POLL, self._poll)
        while self.heap:
            due = heapq.heappop(self.heap)
            if due.at >= self.end:
                break
            if due.call is None:
                self._submit(due)
                continue
            if due.at > as_utc(self.deps.clock.now()):
                self.runtime.run_until(due.at)
            due.call()
        self.runtime.run_until(self.end)
        self._finish()
        return self.summary

    def _push(self, due: _Due) -> None:
        now = as_utc(self.deps.clock.now())
        if due.at < now:
            due.at = now
        self.seq += 1
        due.seq = self.seq
        heapq.heappush(self.heap, due)

    def _call(self, at: datetime, call: Callable[[], None]) -> None:
        self._push(_Due(at=at, seq=0, call=call))

    def _event(self, at: datetime, shopper: _Shopper, kind: str, payload: dict[str, Any],
               before: Callable[[], None] | None = None, label: str = "") -> None:
        if at < self.end:
            self._push(_Due(at=at, seq=0, customer=shopper.id, kind=kind, payload=payload, before=before,
                            label=label))

    def _submit(self, due: _Due) -> None:
        shopper = self.shoppers[due.customer]
        if shopper.delete_at is not None and due.at > shopper.delete_at:
            return  # they deleted us: nothing more from them
        if due.before is not None:
            due.before()
        self.sent += 1
        submit(self.deps, key=f"{self.prefix}/{self.sent:06d}", customer_id=due.customer, kind=due.kind,
               payload=due.payload, at=due.at)
        self._count(due)

    def _count(self, due: _Due) -> None:
        s, p = self.summary, due.payload
        s.events += 1
        if due.kind == "customer_added":
            s.customers += 1
            self.day_counts["customers"] += 1
        elif due.kind == "message":
            s.messages += 1
            self.day_counts["messages"] += 1
            s.answers += due.label == "answer"
            s.gap_questions += due.label == "gap"
            s.complaints += due.label == "complaint"
            s.unsubscribes += due.label == "unsubscribe"
        elif due.kind == "customer_deleted":
            s.deletions += 1
        elif due.kind == "order":
            if p.get("event") == "paid":
                s.orders += 1
                s.coupon_orders += "coupon" in p
                s.gmv = round(s.gmv + float(p.get("amount", 0)), 2)
                self.day_counts["orders"] += 1
            else:
                s.order_events += 1
        elif due.kind == "behaviour":
            event = p.get("event")
            if event == "group_checkin":
                s.checkins += 1
                day = self._day_of(due.at)
                s.checkins_by_day[day] = s.checkins_by_day.get(day, 0) + 1
                self.day_counts["checkins"] += 1
            elif event == "group_joined":
                s.group_joins += 1
            elif event == "group_left":
                s.group_leaves += 1
            else:
                s.behaviours += 1

    # ------------------------------------------------------------------ who the customers are

    def _make_shoppers(self) -> None:
        rng, data = self.rng, self.data
        names = list(data.get("names") or ["客户"])
        channels = list(data.get("channels") or [{"code": None, "weight": 1, "owners": ["owner"]}])
        day_weights = {d: (1.3 if self._date(d).weekday() >= 5 else 1.0) for d in range(1, self.days + 1)}
        for i in range(self.n_customers):
            cid = f"wm{hashlib.sha1(f'{self.seed}/{i}'.encode()).hexdigest()[:14]}"
            channel = _weighted(rng, {j: float(c.get("weight", 1)) for j, c in enumerate(channels)})
            chosen = channels[channel]
            day = _weighted(rng, day_weights)
            arrival = self._local(day, rng)
            if arrival <= self.start:
                arrival = self.start + timedelta(minutes=rng.uniform(1, 90))
            name = rng.choice(names)
            shopper = _Shopper(
                id=cid, name=name, channel=chosen, owner=rng.choice(list(chosen.get("owners") or ["owner"])),
                arrival=arrival, chattiness=_weighted(rng, dict(CHATTINESS)),
                cooperation=_weighted(rng, dict(COOPERATION)), buyer=rng.random() < SPONTANEOUS_BUYERS,
                complainer=rng.random() < COMPLAINERS, angry=rng.random() < ANGRY_ONCE,
                after_sales=rng.random() < AFTER_SALES_ARRIVALS)
            if rng.random() < UNSUBSCRIBERS:
                shopper.unsubscribe_at = self._awake(arrival + timedelta(days=rng.uniform(0.3, 5)), rng)
            if rng.random() < DELETERS:
                shopper.delete_at = self._awake(arrival + timedelta(days=rng.uniform(0.5, 8)), rng)
            self.shoppers[cid] = shopper

    def _trait(self, shopper: _Shopper, slot: str, pool: Any) -> Any:
        """The value (choice slots) or phrasing a customer keeps for a question, drawn once."""
        if slot not in shopper.traits:
            rng = self._keyed("trait", shopper.id, slot)
            shopper.traits[slot] = rng.choice(list(pool)) if isinstance(pool, dict | list) and pool else None
        return shopper.traits[slot]

    # ------------------------------------------------------------------ one day

    def _plan_day(self, day: int) -> None:
        rng = self.rng
        today = self._date(day)
        day_start = max(self.shop.at(today, time(0, 0)), self.start)
        day_end = self.shop.at(today + timedelta(days=1), time(0, 0))
        for shopper in self.shoppers.values():
            if day_start <= shopper.arrival < day_end:
                self._plan_arrival(shopper, rng)
            if shopper.arrival >= day_end or (shopper.delete_at is not None and shopper.delete_at < day_start):
                continue
            self._plan_conversations(shopper, day, rng, day_start)
            self._plan_behaviours(shopper, day, rng)
            if shopper.buyer and not shopper.orders and rng.random() < BUYER_DAILY:
                paid = self._local(day, rng)
                if paid > shopper.arrival:
                    self._plan_order(shopper, paid, rng)
            if shopper.unsubscribe_at is not None and day_start <= shopper.unsubscribe_at < day_end:
                self._message(shopper, shopper.unsubscribe_at, self._pick("unsubscribe", rng), label="unsubscribe")
            if shopper.delete_at is not None and day_start <= shopper.delete_at < day_end:
                self._event(shopper.delete_at, shopper, "customer_deleted",
                            {"change": "del_external_contact", "by": shopper.owner})
        self._plan_checkins(day, rng)

    def _plan_arrival(self, shopper: _Shopper, rng: random.Random) -> None:
        channel = shopper.channel
        payload: dict[str, Any] = {"name": shopper.name, "channel_code": channel.get("code"), "owner": shopper.owner}
        if channel.get("tags"):
            payload["tags"] = list(channel["tags"])
        self._event(shopper.arrival, shopper, "customer_added", payload)
        if shopper.after_sales:
            self._complain(shopper, shopper.arrival + timedelta(minutes=rng.uniform(3, 40)), rng)
        elif rng.random() < OPENING_MESSAGE:
            topic = _weighted(rng, {"product": 6, "faq": 2, "promotion": 1, "gap": 2})
            self._say(shopper, shopper.arrival + timedelta(minutes=rng.uniform(1, 20)), topic, rng)
        group = channel.get("joins")
        if group and rng.random() < JOIN_ON_ARRIVAL:
            self._join(shopper, str(group), self._awake(shopper.arrival + timedelta(minutes=rng.uniform(10, 180)), rng),
                       rng)
        if shopper.angry:
            at = self._awake(shopper.arrival + timedelta(days=rng.uniform(0.5, 6)), rng)
            self._message(shopper, at, self._pick("angry", rng))

    def _plan_conversations(self, shopper: _Shopper, day: int, rng: random.Random, day_start: datetime) -> None:
        age = max(0.0, (day_start - shopper.arrival).total_seconds() / 86400)
        unsubscribed = shopper.unsubscribe_at is not None and shopper.unsubscribe_at < day_start
        chance = shopper.chattiness / (1 + AGE_DECAY * age) * (0.3 if unsubscribed else 1.0)
        if rng.random() >= chance:
            return
        at = self._local(day, rng)
        if at <= shopper.arrival + timedelta(minutes=30):
            return
        topics = dict(TOPICS)
        if any(o.paid_at < at for o in shopper.orders):
            topics |= TOPICS_WITH_ORDER
        if any(o.delivered_at is not None and o.delivered_at < at for o in shopper.orders):
            topics |= TOPICS_AFTER_DELIVERY
        topic = _weighted(rng, topics)
        self._say(shopper, at, topic, rng)
        if rng.random() < SECOND_QUESTION:
            self._say(shopper, at + timedelta(minutes=rng.uniform(1, 6)), _weighted(rng, TOPICS), rng)
        elif rng.random() < FOLLOW_UP:
            self._message(shopper, at + timedelta(minutes=rng.uniform(1, 5)), self._pick("smalltalk", rng))

    def _say(self, shopper: _Shopper, at: datetime, topic: str, rng: random.Random) -> None:
        """One message on ``topic``; a product question sometimes ends in an order."""
        if topic == "gap":
            self._message(shopper, at, _from_themes(rng, self.data["chat"]["gaps"]), label="gap")
            return
        text = self._pick(topic, rng)
        if "{order_id}" in text:
            ordered = [o for o in shopper.orders if o.paid_at < at]
            if not ordered:
                return
            text = text.replace("{order_id}", ordered[-1].id)
        self._message(shopper, at, text)
        if topic == "product" and rng.random() < BUY_AFTER_PRODUCT_QUESTION:
            self._plan_order(shopper, self._awake(at + timedelta(hours=rng.uniform(0.5, 30)), rng), rng)

    def _plan_behaviours(self, shopper: _Shopper, day: int, rng: random.Random) -> None:
        pools = self.data.get("behaviours") or {}
        for event, chance in BEHAVIOURS.items():
            weekend = self._date(day).weekday() >= 5
            if event == "miniprogram_visit" and not weekend:
                chance /= 3
            if not pools.get(event) or rng.random() >= chance:
                continue
            at = self._local(day, rng)
            if at > shopper.arrival:
                self._event(at, shopper, "behaviour", {"event": event, **dict(rng.choice(list(pools[event])))})

    def _plan_checkins(self, day: int, rng: random.Random) -> None:
        groups = list(self.data.get("checkin_groups") or self.deps.library.catalog.groups)
        rate = rng.uniform(*CHECKIN_RATE)
        nine = self.shop.at(self._date(day), time(9, 0))
        members = 0
        for group in groups:
            present = [s for s in self.shoppers.values() if s.member(group, nine)]
            members += len(present)
            count = round(rate * len(present))
            if day == self.dip_day:
                count = int(count * DIP_FACTOR)
            for shopper in rng.sample(present, count):
                minutes = rng.uniform(0, 90) if rng.random() < 0.8 else rng.uniform(90, 780)
                self._event(nine + timedelta(minutes=minutes), shopper, "behaviour",
                            {"event": "group_checkin", "group": group, **self._group_extra("group_checkin")})
        self.members_by_day[day] = members

    def _join(self, shopper: _Shopper, group: str, at: datetime, rng: random.Random) -> None:
        if group in shopper.joined or not shopper.present(at) or at >= self.end:
            return
        shopper.joined[group] = at
        self._event(at, shopper, "behaviour", {"event": "group_joined", "group": group,
                                               **self._group_extra("group_joined")})
        if rng.random() < LEAVE_GROUP:
            left = self._awake(at + timedelta(days=rng.uniform(1, 6)), rng)
            shopper.left[group] = left
            self._event(left, shopper, "behaviour", {"event": "group_left", "group": group,
                                                     **self._group_extra("group_left")})

    def _group_extra(self, event: str) -> dict[str, Any]:
        return dict(((self.data.get("behaviours") or {}).get("group") or {}).get(event) or {})

    def _day_done(self, day: int) -> None:
        members = self.members_by_day.get(day, 0)
        checkins = self.summary.checkins_by_day.get(day, 0)
        if members:
            self.summary.checkin_rate_by_day[day] = round(checkins / members, 3)
        if self.progress is not None:
            c = self.day_counts
            self.progress(f"day {day}/{self.days} {self._date(day)}: +{c['customers']} customers, "
                          f"{c['messages']} messages, {c['orders']} orders, {checkins}/{members} check-ins, "
                          f"{self.summary.tasks_completed} tasks done so far "
                          f"({wall.perf_counter() - self.began:.1f} s)")
        self.day_counts.clear()

    # ------------------------------------------------------------------ orders

    def _plan_order(self, shopper: _Shopper, paid_at: datetime, rng: random.Random,
                    coupon: tuple[str, float, float] | None = None) -> None:
        """A paid order (and, later, its shipping and delivery) with the shop's own order record."""
        if not self.products or paid_at >= self.end or not shopper.present(paid_at):
            return
        count = _weighted(rng, {1: 65, 2: 28, 3: 7})
        items = [dict(p) for p in rng.sample(self.products, min(count, len(self.products)))]
        if coupon is not None:
            while sum(i["price"] for i in items) < coupon[2] and len(items) < 5:
                items.append(dict(rng.choice(self.products)))
            if sum(i["price"] for i in items) < coupon[2]:
                coupon = None
        subtotal = sum(i["price"] for i in items)
        amount = round(max(0.01, subtotal - (coupon[1] if coupon else 0)), 2)
        local_day = self.shop.local_date(paid_at)
        self.order_numbers[local_day] += 1
        records = self.data.get("shop_records") or {}
        order_id = f"{records.get('order_prefix', 'DD')}{local_day:%Y%m%d}{self.order_numbers[local_day]:03d}"
        order = _Order(order_id, paid_at, amount, items)
        shopper.orders.append(order)
        lines = [{"sku": i["sku"], "name": i["name"], "qty": 1, "price": i["price"]} for i in items]
        payload: dict[str, Any] = {"event": "paid", "order_id": order_id, "amount": amount, "items": lines}
        if coupon is not None:
            payload["coupon"] = coupon[0]
        address = rng.choice(list(records.get("addresses") or [""]))
        self._event(paid_at, shopper, "order", payload, before=lambda: self._record_order(
            order, shopper, f"{address} {shopper.name}".strip(), "paid"))
        shipped = self._working(paid_at + timedelta(days=rng.uniform(0.2, 1.5)), rng)
        carrier = rng.choice(list(records.get("carriers") or ["快递"]))
        tracking = f"{(records.get('tracking_prefix') or {}).get(carrier, 'EX')}{rng.randrange(10**11, 10**12)}"
        self._event(shipped, shopper, "order", {"event": "shipped", "order_id": order_id, "carrier": carrier,
                                                "tracking_no": tracking},
                    before=lambda: self._record_shipment(order, carrier, tracking, shipped, "in_transit"))
        delivered = self._daytime(shipped + timedelta(days=rng.uniform(1, 3)), rng)
        if delivered >= self.end:
            return
        order.delivered_at = delivered
        self._event(delivered, shopper, "order", {"event": "delivered", "order_id": order_id},
                    before=lambda: self._record_shipment(order, carrier, tracking, shipped, "delivered"))
        if shopper.complainer and not shopper.complained:
            at = self._awake(delivered + timedelta(hours=rng.uniform(1, 48)), rng)
            self._complain(shopper, at, rng)
            if rng.random() < REFUND_AFTER_COMPLAINT:
                self._event(self._working(at + timedelta(days=rng.uniform(1, 2)), rng), shopper, "order",
                            {"event": "refunded", "order_id": order_id, "amount": amount},
                            before=lambda: self._record_status(order, "refunded"))

    def _complain(self, shopper: _Shopper, at: datetime, rng: random.Random) -> None:
        shopper.complained = True
        self._message(shopper, at, _from_themes(rng, self.data["chat"]["complaints"]), label="complaint")

    def _record_order(self, order: _Order, shopper: _Shopper, address: str, status: str) -> None:
        with self.deps.engine.begin() as conn:
            upsert(conn, ShopOrder.__table__, [{"order_no": order.id, "customer_id": shopper.id, "status": status,
                                                "amount": order.amount, "items": order.items, "address": address,
                                                "created_at": order.paid_at}])

    def _record_shipment(self, order: _Order, carrier: str, tracking: str, shipped: datetime, status: str) -> None:
        picked = dict((self.data.get("shop_records") or {}).get("picked_up") or {})
        events = [{"at": f"{self.shop.local(shipped):%Y-%m-%d %H:%M}", **picked}] if picked else []
        eta = self.shop.local(shipped + timedelta(days=2))
        with self.deps.engine.begin() as conn:
            upsert(conn, Shipment.__table__, [{"id": f"{order.id}/{tracking}", "tracking_no": tracking,
                                               "order_no": order.id, "carrier": carrier, "status": status,
                                               "eta": f"{eta:%Y-%m-%d}", "events": events}])
            conn.execute(update(ShopOrder.__table__).where(ShopOrder.__table__.c.order_no == order.id)
                         .values(status="shipped" if status != "delivered" else "delivered"))

    def _record_status(self, order: _Order, status: str) -> None:
        with self.deps.engine.begin() as conn:
            conn.execute(update(ShopOrder.__table__).where(ShopOrder.__table__.c.order_no == order.id)
                         .values(status=status))

    def _products(self) -> list[dict[str, Any]]:
        p = Product.__table__.c
        with self.deps.engine.connect() as conn:
            rows = conn.execute(select(p.sku, p.name, p.price).where(p.status == "on_sale", p.price > 0,
                                                                     (p.stock.is_(None)) | (p.stock > 0))
                                .order_by(p.sku)).all()
        return [{"sku": sku, "name": name, "price": float(price)} for sku, name, price in rows]

    # ------------------------------------------------------------------ reacting to what the pipeline did

    def _poll(self) -> None:
        now = as_utc(self.deps.clock.now())
        engine = self.deps.engine
        r, k, lg, o = SopRun.__table__.c, EmployeeTask.__table__.c, CouponLedger.__table__.c, Outbox.__table__.c
        with engine.connect() as conn:
            asks = conn.execute(select(r.id, r.sop_id, r.sop_version, r.customer_id, r.waiting, r.waiting_since)
                                .where(r.status.in_(LIVE), r.waiting_kind == "ask",
                                       r.waiting_since > self.last_poll - timedelta(seconds=1))
                                .order_by(r.waiting_since, r.id)).all()
            tasks = conn.execute(select(k.id, k.customer_id, k.kind, k.created_at).where(k.id > self.last_task)
                                 .order_by(k.id)).all()
            coupons = conn.execute(select(lg.id, lg.customer_id, lg.campaign_id, lg.code, lg.issued_at)
                                   .where(lg.id > self.last_coupon).order_by(lg.id)).all()
            invites = conn.execute(select(o.id, o.customer_id, o.payload, o.sent_at)
                                   .where(o.action == "group_invite", o.status == "sent",
                                          o.sent_at > self.last_poll - timedelta(seconds=1))
                                   .order_by(o.id)).all()
        for run_id, sop_id, version, cid, token, since in asks:
            if (run_id, token) not in self.seen_asks and cid in self.shoppers:
                self.seen_asks.add((run_id, token))
                self._answer(self.shoppers[cid], run_id, sop_id, version, str(token), as_utc(since))
        for task_id, cid, kind, created in tasks:
            self.last_task = task_id
            self._work(task_id, cid, kind, as_utc(created))
        for coupon_id, cid, campaign_id, code, issued in coupons:
            self.last_coupon = coupon_id
            if cid in self.shoppers:
                self._maybe_redeem(self.shoppers[cid], coupon_id, campaign_id, code, as_utc(issued))
        for outbox_id, cid, payload, sent_at in invites:
            if outbox_id in self.seen_invites:
                continue
            self.seen_invites.add(outbox_id)
            group = (payload or {}).get("group")
            if cid in self.shoppers and group and self._keyed("invite", str(outbox_id)).random() < JOIN_FROM_INVITE:
                rng = self._keyed("join", str(outbox_id))
                self._join(self.shoppers[cid], str(group),
                           self._awake(as_utc(sent_at) + timedelta(minutes=rng.uniform(5, 360)), rng), rng)
        self.last_poll = now
        if now + POLL < self.end:
            self._call(now + POLL, self._poll)

    def _answer(self, shopper: _Shopper, run_id: str, sop_id: str, version: int, token: str,
                since: datetime) -> None:
        """A question an SOP asked this customer: answer it (in the customer's words), later, or never."""
        spec = self.deps.library.sops.get(sop_id)
        parts = token.split(":")
        step = spec.steps_by_id.get(parts[1]) if spec is not None and len(parts) > 1 else None
        pools = self.data.get("answers") or {}
        if not isinstance(step, AskStep) or step.slot not in pools:
            return
        rng = self._keyed("answer", run_id, token)
        chance = shopper.cooperation
        if sop_id in self.edited_version and version >= self.edited_version[sop_id]:
            chance += float(((self.data.get("sop_edit") or {}).get("answer_lift") or {}).get(step.slot, 0))
        if step.slot.startswith("complaint_"):
            chance = max(chance, 0.8)
        if rng.random() >= chance:
            return
        text = self._answer_text(shopper, step.slot, pools[step.slot], rng, since)
        if text is None:
            return
        roll = rng.random()
        minutes = rng.uniform(0.3, 8) if roll < 0.65 else rng.uniform(8, 90) if roll < 0.9 else rng.uniform(210, 600)
        self._message(shopper, self._awake(since + timedelta(minutes=minutes), rng), text, label="answer")

    def _answer_text(self, shopper: _Shopper, slot: str, pool: Any, rng: random.Random,
                     at: datetime) -> str | None:
        vague = list((self.data.get("answers") or {}).get("vague") or [])
        if vague and rng.random() < VAGUE_ANSWER:
            return str(rng.choice(vague))
        if isinstance(pool, dict):  # choice: the customer's own value, or earlier values likelier
            values = list(pool)
            value = self._trait(shopper, slot, pool) if slot in ("skin_type", "concern") else \
                _weighted(rng, {v: 0.55 ** i for i, v in enumerate(values)})
            phrases = list(pool.get(value) or [])
            text = str(rng.choice(phrases)) if phrases else None
        else:
            phrases = [str(p) for p in pool or []]
            text = str(self._trait(shopper, slot, phrases)) if slot == "budget" else \
                (rng.choice(phrases) if phrases else None)
        if text is not None and "{order_id}" in text:
            ordered = [o for o in shopper.orders if o.paid_at <= at]
            if ordered:
                text = text.replace("{order_id}", ordered[-1].id)
            else:  # bought elsewhere: the number the order was placed with, or what they remember
                fallback = [str(p) for p in (self.data.get("answers") or {}).get(f"{slot}_elsewhere") or []]
                text = rng.choice(fallback) if fallback else None
        if text is not None and "{phone}" in text:
            text = text.replace("{phone}", f"1{rng.choice('3589')}{rng.randrange(10**9):09d}")
        return text

    def _work(self, task_id: int, cid: str | None, kind: str, created: datetime) -> None:
        """An employee task: done quickly, late, or left open."""
        rng = self._keyed("task", str(task_id))
        shares = HANDOFF_WORK if kind == "handoff" else SEND_TASK_WORK
        roll, cumulative = rng.random(), 0.0
        for share, (low, high) in shares:
            cumulative += share
            if roll < cumulative:
                done = self._working(created + timedelta(minutes=rng.uniform(low, high)), rng)
                if done < self.end:
                    self._call(done, lambda: self._complete(task_id))
                return

    def _complete(self, task_id: int) -> None:
        now = as_utc(self.deps.clock.now())
        with self.deps.engine.begin() as conn:
            task = mark_done(conn, task_id, now)
            if task is not None and task["kind"] == "handoff" and task.get("customer_id") and conn.execute(
                    select(Customer.__table__.c.bot_paused).where(Customer.__table__.c.id == task["customer_id"])
            ).scalar():
                effects = Effects()  # the person is done with the conversation: the bot answers again
                release_handoff(conn, effects, task["customer_id"], at=now, by=str(task["assignee"]))
                memory.reset_streak(conn, task["customer_id"])
                effects.flush(conn)
        if task is not None:
            announce_done(self.deps, task)
            self.summary.tasks_completed += 1

    def _maybe_redeem(self, shopper: _Shopper, coupon_id: int, campaign_id: str, code: str,
                      issued: datetime) -> None:
        campaign = self.deps.library.catalog.campaigns.get(campaign_id)
        rng = self._keyed("coupon", str(coupon_id))
        if campaign is None or rng.random() >= COUPON_REDEEMED:
            return
        hours = rng.uniform(0.5, 6) if rng.random() < 0.5 else rng.uniform(6, 72)
        self._plan_order(shopper, self._awake(issued + timedelta(hours=hours), rng), rng,
                         coupon=(code, float(campaign.amount), float(campaign.threshold)))

    # ------------------------------------------------------------------ the operator's edit

    def _publish_edit(self) -> None:
        """Publish a new version of the data file's SOP as the operator API does: a numbered ``SopVersion`` row
        (published; the previous one retired), the audit log, and ``Runtime.replace_sop``. The bundled library
        has no version rows: its text is first stored as the version it declares, retired."""
        edit = self.data["sop_edit"]
        sop_id = str(edit["sop"])
        library = self.deps.library
        spec, source = library.sops.get(sop_id), library.sources.get(sop_id)
        if spec is None or source is None:
            self.summary.problems.append(f"sop_edit: no SOP {sop_id!r} in the library")
            return
        v = SopVersion.__table__.c
        with self.deps.engine.connect() as conn:
            rows = conn.execute(select(v.version, v.source, v.status).where(v.sop_id == sop_id)
                                .order_by(v.version)).all()
        published = [text for _, text, status in rows if status == "published"]
        original = published[-1] if published else Path(source.file).read_text(encoding="utf-8")
        text = original
        for change in edit.get("replace") or []:
            if str(change["old"]) not in text:
                self.summary.problems.append(f"sop_edit: {sop_id} no longer contains {str(change['old'])[:40]!r}")
                return
            text = text.replace(str(change["old"]), str(change["new"]))
        version = max([spec.version, *(r[0] for r in rows)]) + 1
        text = _with_version(text, version)
        new_spec, new_source, problems = load_sop_text(text, f"{sop_id}.yaml", sop_id)
        if new_spec is not None and not problems:
            problems = [p for p in validate(with_sop(library, new_spec, new_source)) if p.file == new_source.file]
        if new_spec is None or problems:
            self.summary.problems += [f"sop_edit: {p}" for p in problems]
            return
        now = as_utc(self.deps.clock.now())
        actor = str(edit.get("by") or "operator")
        self.runtime.replace_sop(new_spec, new_source)
        with self.deps.engine.begin() as conn:
            if not rows:
                conn.execute(SopVersion.__table__.insert().values(
                    sop_id=sop_id, version=spec.version, source=original, status="published", created_at=self.start,
                    created_by="library"))
            conn.execute(SopVersion.__table__.insert().values(sop_id=sop_id, version=version, source=text,
                                                              status="draft", created_at=now, created_by=actor))
            audit.record(conn, at=now, actor=actor, action="sop.save", target=sop_id, detail={"version": version})
            conn.execute(update(SopVersion.__table__).where(v.sop_id == sop_id, v.status == "published")
                         .values(status="retired"))
            conn.execute(update(SopVersion.__table__).where(v.sop_id == sop_id, v.version == version)
                         .values(status="published"))
            audit.record(conn, at=now, actor=actor, action="sop.publish", target=sop_id, detail={"version": version})
        self.edited_version[sop_id] = version
        self.summary.sop_edits += 1
        self.summary.published.append(f"{sop_id}@{version}")
        if self.progress is not None:
            self.progress(f"{actor} published {sop_id} version {version}")

    # ------------------------------------------------------------------ the end

    def _finish(self) -> None:
        s = self.summary
        m, k = Message.__table__.c, EmployeeTask.__table__.c
        with self.deps.engine.connect() as conn:
            metas = conn.execute(select(m.meta).where(m.direction == "out", m.at >= self.start, m.at < self.end,
                                                      m.key.like("out/%"))).scalars().all()
            statuses = dict(conn.execute(select(k.status, func.count()).where(
                k.created_at >= self.start, k.created_at < self.end).group_by(k.status)).all())
        turns = [meta for meta in metas if meta and "intent" in meta]
        s.replies = len(turns)
        s.unanswered = sum(meta.get("grounded") is False for meta in turns)
        s.tasks_created = sum(statuses.values())
        s.tasks_open = statuses.get("open", 0)
        s.digest = inbound_digest(self.runtime)
        s.wall_seconds = round(wall.perf_counter() - self.began, 2)

    # ------------------------------------------------------------------ helpers

    def _message(self, shopper: _Shopper, at: datetime, text: str, *, label: str = "") -> None:
        self._event(at, shopper, "message", {"text": text}, label=label)

    def _pick(self, topic: str, rng: random.Random) -> str:
        return str(rng.choice(list(self.data["chat"][topic])))

    def _keyed(self, *parts: str) -> random.Random:
        return random.Random("/".join([str(self.seed), *parts]))

    def _date(self, day: int) -> date:
        return self.first_day + timedelta(days=day - 1)

    def _day_of(self, at: datetime) -> int:
        return (self.shop.local_date(at) - self.first_day).days + 1

    def _local(self, day: int, rng: random.Random) -> datetime:
        """A moment of ``day`` when shoppers write (the data file's hour weights)."""
        hour = _weighted(rng, dict(self.hours))
        at = self.shop.at(self._date(day), time(hour % 24, rng.randrange(60), rng.randrange(60)))
        return at + timedelta(days=1) if hour < 3 else at  # 0:xx belongs to the evening before

    def _awake(self, at: datetime, rng: random.Random) -> datetime:
        """``at``, or the next morning when it falls in the night."""
        local = self.shop.local(at)
        if NIGHT[0] <= local.time() < NIGHT[1]:
            return self.shop.at(local.date(), NIGHT[1]) + timedelta(minutes=rng.uniform(0, 90))
        return at

    def _working(self, at: datetime, rng: random.Random) -> datetime:
        """``at``, or the start of the next working period."""
        local = self.shop.local(at)
        if local.time() < WORK_DAY[0]:
            return self.shop.at(local.date(), WORK_DAY[0]) + timedelta(minutes=rng.uniform(0, 45))
        if local.time() >= WORK_DAY[1]:
            return self.shop.at(local.date() + timedelta(days=1), WORK_DAY[0]) + timedelta(minutes=rng.uniform(0, 45))
        return at

    def _daytime(self, at: datetime, rng: random.Random) -> datetime:
        """A parcel arrives between 9:00 and 20:00."""
        local = self.shop.local(at)
        if time(9, 0) <= local.time() < time(20, 0):
            return at
        day = local.date() + timedelta(days=1) if local.time() >= time(20, 0) else local.date()
        return self.shop.at(day, time(9, 0)) + timedelta(minutes=rng.uniform(0, 600))


def _weighted(rng: random.Random, weights: dict[Any, float]) -> Any:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _from_themes(rng: random.Random, themes: dict[str, list[str]]) -> str:
    """A phrasing of one of the themes; a theme with more phrasings in the data file comes up more often."""
    theme = _weighted(rng, {name: len(phrasings or []) for name, phrasings in themes.items()})
    return str(rng.choice(list(themes[theme])))


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


_VERSION = re.compile(r"^version:[^\n]*$", re.MULTILINE)
_ID = re.compile(r"^id:[^\n]*$", re.MULTILINE)


def _with_version(text: str, version: int) -> str:
    """The SOP YAML with its top-level ``version`` set (inserted after ``id`` when absent)."""
    if _VERSION.search(text):
        return _VERSION.sub(f"version: {version}", text, count=1)
    match = _ID.search(text)
    if match is None:
        return f"version: {version}\n{text}"
    return f"{text[:match.end()]}\nversion: {version}{text[match.end():]}"
