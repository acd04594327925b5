"""Claims due touchpoints and dispatches the outbox.

Due rows of kind ``push``/``end``, enrolments into graph-free SOPs and timeouts of pauses that lead
on to a pure tail are handled in batches straight from the table (no graph); other ``enrol`` and
``resume`` rows drive graphs; ``cron``/``sweep`` fan out scheduled SOPs and silence checks.
Outbox rows pass the contact policy, go to the channel (idempotent by key), then are marked sent.
On SQLite one worker runs per database (see README); on PostgreSQL several do, each handling one customer
shard at a time (``shard=``; knowledge/shards.py).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any

from croniter import croniter
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from knowledge.batching import cached_reads, deferred_writes
from knowledge.clock import as_utc, parse_hhmm
from knowledge.db import any_of, in_chunks, insert_ignore, insert_many, run_in
from knowledge.tables import Customer
from sop_graphs.actions import perform, preload_coupons
from sop_graphs.channel import Delivery
from sop_graphs.customers import BROADCAST, load_customers, set_stage, tags_of_many
from sop_graphs.deps import Deps, Origin
from sop_graphs.effects import Effects
from sop_graphs.enrolment import (
    LIVE,
    Ending,
    Entry,
    admit_many,
    audience_matches,
    finish_runs,
    run_statuses,
    schedule_enrolment,
)
from sop_graphs.nodes import leave_on_timeout, pure_timeouts, schedule_segment, tails_of
from sop_graphs.policy import Contact, Decision
from sop_graphs.runner import GraphRunner, Start
from sop_graphs.spec import CouponStep, Outcome, ScheduleTrigger, SilentTrigger
from sop_graphs.tables import ContactState, DueTouchpoint, EmployeeTask, Outbox, SopRun
from sop_graphs.timing import plan_whole_run

_O = Outbox.__table__.c
_D = DueTouchpoint.__table__.c


def _postpone_timeout(conn: Connection, row: Any, delta: timedelta) -> None:
    """A question put off by the contact policy gets its whole time to be answered: the pause's timeout moves
    with it (the customer cannot answer a question that has not been sent)."""
    pending = conn.execute(select(_D.id, _D.due_at, _D.payload).where(
        _D.run_id == row["run_id"], _D.step_id == row["step_id"], _D.kind == "resume",
        _D.status == "pending")).all()
    for due_id, due_at, payload in pending:
        if (payload or {}).get("kind") == "timeout":
            conn.execute(update(DueTouchpoint.__table__).where(_D.id == due_id).values(due_at=as_utc(due_at) + delta))
_R = SopRun.__table__.c
_C = Customer.__table__.c
_S = ContactState.__table__.c
# built once: the tick loop runs these every simulated second
_NEXT_DUE = select(func.min(_D.due_at)).where(_D.status == "pending")
_NEXT_OUT = select(func.min(_O.not_before)).where(_O.status == "pending")
_DUE_NOW = (select(DueTouchpoint.__table__).where(_D.status == "pending", _D.due_at <= bindparam("now"))
            .order_by(_D.due_at, _D.id).limit(bindparam("n")))
_OUT_NOW = (select(Outbox.__table__).where(_O.status == "pending", _O.not_before <= bindparam("now"))
            .order_by(_O.not_before, _O.id).limit(bindparam("n")))
_SETTLE_DUE_IN = (update(DueTouchpoint.__table__).where(any_of(_D.id))
                  .values(status=bindparam("settled"), done_at=bindparam("at")))
_WAITING_IN = select(_R.id, _R.waiting).where(_R.status.in_(LIVE), any_of(_R.id))
_SCHEDULED_IN = update(SopRun.__table__).where(any_of(_R.id)).values(status="scheduled")
_SENT_IN = (update(Outbox.__table__).where(any_of(_O.id))
            .values(status="sent", sent_at=bindparam("at"), mode=bindparam("sent_mode")))
_STATES_IN = select(ContactState.__table__).where(any_of(_S.customer_id))
_FORGET_CONTACTS_IN = ContactState.__table__.delete().where(any_of(_S.customer_id))
_CONTACT_CUSTOMERS_IN = select(_C.id, _C.unsubscribed_at, _C.stage, _C.last_inbound_at).where(any_of(_C.id))
# the runs of the batch's customers in SOPs that suppress marketing; ``sop_id || ''`` keeps SQLite from walking
# that SOP's every run through the sop_id index instead of the batch's customers' runs
_LIVE_SOPS_IN = select(_R.customer_id, _R.sop_id).where(any_of(_R.customer_id), _R.status.in_(LIVE),
                                                         (_R.sop_id + "").in_(bindparam("sops", expanding=True)))
# marketing still due today per customer (its priority is in the payload): reserves slots for time-critical rows
_DUE_TODAY_IN = select(_O.id, _O.customer_id, _O.payload).where(
    any_of(_O.customer_id), _O.status == "pending", _O.marketing.is_(True), _O.not_before < bindparam("until"))
KF_WINDOW = timedelta(hours=48)
KF_PER_MESSAGE = 5  # kf/send_msg allows 5 messages per customer message
TASK_MODES = {"member_task": "send_private", "group_task": "send_group", "moment_task": "post_moment",
              "task": "handoff"}
SWEEP_AT = "09:30"
ENROL_CHUNK = 250  # graph enrolments per transaction: one commit for many starts, short enough not to block writers
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Worker:
    """Processes everything due at the clock's now."""

    def __init__(self, deps: Deps, runner: GraphRunner) -> None:
        self.deps = deps
        self.runner = runner
        self.steps = {sop_id: spec.steps_by_id for sop_id, spec in deps.library.sops.items()}
        # SOPs with no ask, branch, chat or event wait run entirely from the due table
        self.pure = {sop_id: plan for sop_id, spec in deps.library.sops.items()
                     if (plan := plan_whole_run(spec)) is not None}
        # pausing steps whose timeout leads on to a pure tail: their timeouts need no graph either
        self.tails = {sop_id: tails_of(spec) for sop_id, spec in deps.library.sops.items()}
        self.timeouts = {sop_id: pure_timeouts(spec, self.tails[sop_id]) for sop_id, spec in deps.library.sops.items()}
        self.stats: dict[str, int] = defaultdict(int)

    def refresh(self, sop_id: str) -> None:
        """Re-read one SOP's steps and plans after it was replaced."""
        spec = self.deps.library.sops[sop_id]
        self.steps[sop_id] = spec.steps_by_id
        self.tails[sop_id] = tails_of(spec)
        self.timeouts[sop_id] = pure_timeouts(spec, self.tails[sop_id])
        self.pure.pop(sop_id, None)
        if (plan := plan_whole_run(spec)) is not None:
            self.pure[sop_id] = plan

    def _batchable(self, row: Any) -> bool:
        """Rows the worker performs in batches without a graph: pushes, ends, enrolments into graph-free
        SOPs, and timeouts of pauses that lead on to a pure tail."""
        kind = row["kind"]
        if kind in ("push", "end"):
            return True
        if kind == "enrol":
            return row["sop_id"] in self.pure
        return (kind == "resume" and row["payload"].get("kind") == "timeout"
                and row["step_id"] in self.timeouts.get(row["sop_id"], {}))

    # ------------------------------------------------------------------ bootstrap

    def bootstrap(self) -> None:
        """Schedule the next occurrence of each cron SOP and the daily silence sweep (idempotent)."""
        now = self.deps.clock.now()
        effects = Effects()
        for spec in self.deps.library.sops.values():
            for trigger in spec.triggers:
                if isinstance(trigger, ScheduleTrigger) and spec.enabled:
                    self._schedule_cron(effects, spec.id, trigger.cron, now)
        self._schedule_sweep(effects, now)
        with self.deps.engine.begin() as conn:
            effects.flush(conn)

    def _schedule_cron(self, effects: Effects, sop_id: str, cron: str, after: datetime) -> None:
        local = self.deps.shop.local(after)
        nxt = croniter(cron, local).get_next(datetime)
        effects.schedule(key=f"cron/{sop_id}/{as_utc(nxt).isoformat()}", kind="cron", due_at=nxt, sop_id=sop_id,
                         payload={"cron": cron})

    def _schedule_sweep(self, effects: Effects, after: datetime, since: datetime | None = None) -> None:
        """The next daily sweep; it looks at contacts that crossed a threshold after ``since`` (all if None)."""
        nxt = self.deps.shop.next_time_of_day(after, parse_hhmm(SWEEP_AT))
        effects.schedule(key=f"sweep/{as_utc(nxt).isoformat()}", kind="sweep", due_at=nxt,
                         payload={"since": as_utc(since).isoformat() if since else None})

    # ------------------------------------------------------------------ due rows

    def next_due(self) -> datetime | None:
        with self.deps.engine.connect() as conn:
            due = conn.execute(_NEXT_DUE).scalar()
            out = conn.execute(_NEXT_OUT).scalar()
        times = [as_utc(t) for t in (due, out) if t is not None]
        return min(times) if times else None

    def process_due(self, shard: int | None = None, guard: Callable[[], None] | None = None) -> int:
        """Handle every due row with due_at <= now (of one customer shard, if given); returns how many. ``guard``
        runs before each batch (it raises when this worker may no longer work the shard)."""
        handled = 0
        batch = self.deps.settings.worker_batch
        query = _DUE_NOW if shard is None else _DUE_NOW.where(_D.shard == shard)
        while True:
            now = self.deps.clock.now()
            with self.deps.engine.connect() as conn:
                rows = conn.execute(query, {"now": as_utc(now), "n": batch}).mappings().all()
            if not rows:
                return handled
            if guard is not None:
                guard()
            pushes: list[Any] = []
            waiting: set[str] = set()  # customers with a push not yet performed: their order must hold
            i = 0
            while i < len(rows):
                if self._batchable(rows[i]):
                    pushes.append(rows[i])
                    waiting.add(rows[i]["customer_id"])
                    i += 1
                    continue
                block = self._graph_enrolments(rows, i) if rows[i]["kind"] == "enrol" else rows[i:i + 1]
                if pushes and any(r["customer_id"] in waiting or r["customer_id"] in (BROADCAST, None) for r in block):
                    self._pushes(pushes)
                    pushes, waiting = [], set()
                if rows[i]["kind"] == "enrol":
                    self._enrol_graphs(block)
                else:
                    self._one(rows[i])
                i += len(block)
            if pushes:
                self._pushes(pushes)
            handled += len(rows)

    def _graph_enrolments(self, rows: Sequence[Any], start: int) -> list[Any]:
        """The run of graph-SOP enrolments from ``start`` with distinct customers, admitted together:
        a graph can change only its own customer's admission, so their order among them is free."""
        block, subjects = [rows[start]], {rows[start]["customer_id"]}
        for row in itertools.islice(rows, start + 1, None):
            if row["kind"] != "enrol" or self._batchable(row) or row["customer_id"] in subjects:
                break
            block.append(row)
            subjects.add(row["customer_id"])
        return block

    def _done(self, conn: Connection, ids: list[int], status: str = "done") -> None:
        run_in(conn, _SETTLE_DUE_IN, ids, settled=status, at=as_utc(self.deps.clock.now()))

    def _pushes(self, rows: list[Any]) -> None:
        """One transaction for a batch of pushes, run ends, graph-free enrolments and pure timeouts."""
        deps = self.deps
        effects = Effects()
        by_kind: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_kind[row["kind"]].append(row)
        with deps.engine.begin() as conn, deferred_writes(conn, effects):  # the batch's run marks together
            customers = load_customers(conn, [r["customer_id"] for r in rows if r["customer_id"] != BROADCAST])
            self._enrol_pure(conn, effects, by_kind["enrol"], customers)
            self._time_out(conn, effects, by_kind["resume"], customers)
            steps = by_kind["push"] + by_kind["end"]
            steps.sort(key=lambda r: (r["due_at"], r["id"]))
            self._perform(conn, effects, steps, customers)

    def _perform(self, conn: Connection, effects: Effects, rows: list[Any], customers: dict[str, Any]) -> None:
        deps = self.deps
        status = run_statuses(conn, [r["run_id"] for r in rows])
        tags = tags_of_many(conn, [r["customer_id"] for r in rows if r["customer_id"] != BROADCAST])
        done, cancelled, endings = [], [], []
        coupons = [r["customer_id"] for r in rows if isinstance(self.steps.get(r["sop_id"], {}).get(r["step_id"] or ""),
                                                                CouponStep)]
        with cached_reads(conn, lambda cache: preload_coupons(conn, cache, coupons) if coupons else None):
            for row in rows:
                spec = deps.library.sops.get(row["sop_id"])
                step = self.steps.get(row["sop_id"], {}).get(row["step_id"]) if row["step_id"] else None
                if status.get(row["run_id"]) not in LIVE or row["run_id"] in effects.ended or spec is None \
                        or (row["kind"] == "push" and step is None):
                    cancelled.append(row["id"])
                    continue
                at = as_utc(row["due_at"])
                if row["kind"] == "end":  # the end step, or steps that simply ran out
                    endings.append(Ending(row["run_id"], "completed", "reached the end",
                                          step.outcome if step is not None else Outcome(), at))
                else:
                    perform(conn, deps, effects, spec=spec, step=step, run_id=row["run_id"],
                            customer=customers.get(row["customer_id"]), customer_id=row["customer_id"],
                            tags=tags.get(row["customer_id"], set()), occurrence=row["payload"]["occurrence"],
                            at=at, origin=row["payload"].get("origin", "timer"))
                done.append(row["id"])
        finish_runs(conn, deps, effects, endings)
        effects.flush(conn)
        self._done(conn, done)
        self._done(conn, cancelled, "cancelled")
        self.stats["push"] += len(done)

    def _time_out(self, conn: Connection, effects: Effects, rows: list[Any], customers: dict[str, Any]) -> None:
        """Timeouts of pauses whose way on is a pure tail: the same transition the await node makes
        (:func:`leave_on_timeout`), for a batch of runs, checked against the token each run awaits."""
        if not rows:
            return
        deps = self.deps
        now = deps.clock.now()
        waiting = dict(run_in(conn, _WAITING_IN, [r["run_id"] for r in rows]))
        done, stale = [], []
        for row in rows:
            token = row["payload"].get("token")
            if waiting.get(row["run_id"]) != token:  # answered, superseded or ended meanwhile
                stale.append(row["id"])
                continue
            spec = deps.library.sops[row["sop_id"]]
            step, follow = self.timeouts[spec.id][row["step_id"]]
            leave_on_timeout(conn, deps, effects, spec, self.tails[spec.id], step, follow, run_id=row["run_id"],
                             customer_id=row["customer_id"], visit=int(token.rsplit(":", 1)[1]), now=now,
                             origin="timer", customer=customers.get(row["customer_id"]))
            done.append(row["id"])
        effects.flush(conn)
        self._done(conn, done + stale)
        self.stats["timeout"] += len(done)
    def _one(self, row: Any) -> None:
        kind = row["kind"]
        deps = self.deps
        if kind == "resume":
            origin = "customer" if row["payload"].get("kind") == "answer" else "timer"
            if row["payload"].get("kind") == "event":
                origin = "system"
            self.runner.resume(row["sop_id"], row["run_id"], dict(row["payload"]), origin)
        elif kind == "cron":
            self._cron(row)
        elif kind == "sweep":
            self._sweep(row)
        with deps.engine.begin() as conn:
            self._done(conn, [row["id"]])
        self.stats[kind] += 1

    def _enrol_graphs(self, rows: list[Any]) -> None:
        """Enrolments into SOPs that need a graph, ``ENROL_CHUNK`` per transaction: admitted, each new run taken to
        its first pause (``GraphRunner.start_many``: no graph invocation) and the rows marked done, all at once.

        A crash rolls the chunk back whole and its rows are replayed. A run that already existed (admitted by an
        earlier version that started graphs one by one) is started or recovered from its checkpoint.
        """
        deps = self.deps
        for chunk in in_chunks(rows, ENROL_CHUNK):
            entries = self._entries(list(chunk))
            effects = Effects()
            earlier: list[tuple[Any, Entry]] = []
            with deps.engine.begin() as conn:
                admitted = admit_many(conn, effects, [entry for _, entry in entries], deps.clock.now())
                effects.flush(conn)
                starts = []
                for (row, entry), admission in zip(entries, admitted, strict=True):
                    if admission.run_id is not None and admission.new:
                        starts.append(Start(entry.spec.id, entry.run_id, entry.customer_id, _enrol_origin(row)))
                    elif admission.run_id is not None:
                        earlier.append((row, entry))
                self.runner.start_many(conn, starts)
                if not earlier:
                    self._done(conn, [r["id"] for r in chunk])
            for row, entry in earlier:
                self.runner.start(entry.spec.id, entry.run_id, entry.customer_id, _enrol_origin(row))
            if earlier:
                with deps.engine.begin() as conn:
                    self._done(conn, [r["id"] for r in chunk])
            self.stats["enrol"] += len(chunk)

    def _entries(self, rows: list[Any]) -> list[tuple[Any, Entry]]:
        """Enrolment rows whose SOP still exists, each with its admission entry."""
        entries = []
        for row in rows:
            if (spec := self.deps.library.sops.get(row["sop_id"])) is not None:
                entries.append((row, Entry(spec, row["customer_id"], row["payload"]["trigger_key"],
                                           row["payload"].get("reason", ""))))
        return entries

    def _enrol_pure(self, conn: Connection, effects: Effects, rows: list[Any], customers: dict[str, Any]) -> None:
        """Enrolments into graph-free SOPs: admitted together, each admitted run written as due rows."""
        deps = self.deps
        now = deps.clock.now()
        entries = self._entries(rows)
        scheduled = []
        for (row, entry), admission in zip(entries, admit_many(conn, effects, [e for _, e in entries], now, customers),
                                           strict=True):
            if admission.run_id is None:
                continue
            customer = customers.get(row["customer_id"])
            added_at = as_utc(customer["added_at"]) if customer else now
            schedule_segment(effects, deps, entry.spec, self.pure[entry.spec.id], run_id=admission.run_id,
                             customer_id=row["customer_id"], occurrence="run.1", start=now, added_at=added_at,
                             origin=_enrol_origin(row))
            scheduled.append(admission.run_id)
        run_in(conn, _SCHEDULED_IN, scheduled)
        self._done(conn, [r["id"] for r in rows])
        self.stats["enrol"] += len(rows)

    def _cron(self, row: Any) -> None:
        deps = self.deps
        spec = deps.library.sops.get(row["sop_id"])
        effects = Effects()
        due = as_utc(row["due_at"])
        if spec is not None and spec.enabled:
            occurrence = f"cron{as_utc(due).strftime('%Y%m%d%H%M')}"
            with deps.engine.begin() as conn:
                if spec.defaults.touchpoint in ("group", "moments"):
                    schedule_enrolment(effects, spec, BROADCAST, trigger_key=occurrence, due_at=due,
                                       reason="schedule")
                else:
                    everyone = conn.execute(select(Customer.__table__).where(_C.stage != "churned")).mappings().all()
                    for chunk in in_chunks(everyone):
                        tags = tags_of_many(conn, [c["id"] for c in chunk])
                        for customer in chunk:
                            if audience_matches(spec.audience, dict(customer), tags[customer["id"]]):
                                schedule_enrolment(effects, spec, customer["id"], trigger_key=occurrence,
                                                   due_at=due, reason="schedule")
                self._schedule_cron(effects, spec.id, row["payload"]["cron"], due)
                effects.flush(conn)

    def _sweep(self, row: Any) -> None:
        """Daily: move customers who went quiet to 'silent' and fire silent_for triggers once per spell.

        Only customers whose last contact crossed a threshold since the previous sweep are read, so a
        sweep costs what changed that day, not the size of the customer base.
        """
        deps = self.deps
        now = as_utc(row["due_at"])
        since = as_utc(datetime.fromisoformat(row["payload"]["since"])) if row["payload"].get("since") else EPOCH
        silent_triggers = [(spec, trigger) for spec in deps.library.sops.values() if spec.enabled
                           for trigger in spec.triggers if isinstance(trigger, SilentTrigger)]
        stage_days = deps.settings.silent_after_days
        effects = Effects()
        with deps.engine.begin() as conn:
            crossed = {days: self._crossed(conn, days, since, now)
                       for days in {stage_days, *(trigger.days for _, trigger in silent_triggers)}}
            for cid, _ in crossed[stage_days]:
                set_stage(conn, effects, cid, "silent", at=now, reason=f"{stage_days} 天无互动")
            for spec, trigger in silent_triggers:
                due = deps.shop.next_time_of_day(now, parse_hhmm(trigger.at)) if trigger.at else now
                for cid, last_seen in crossed[trigger.days]:
                    schedule_enrolment(effects, spec, cid, trigger_key=f"silent{last_seen:%Y%m%d}",
                                       due_at=due, reason=f"silent for {trigger.days} days")
            self._schedule_sweep(effects, now, since=now)
            effects.flush(conn)

    def _crossed(self, conn: Connection, days: int, since: datetime, now: datetime) -> list[tuple[str, datetime]]:
        """Customers whose last contact became ``days`` old in (since, now].

        The rows are locked (PostgreSQL): the sweep runs in one shard while other workers serve these customers, and
        a customer whose message is being handled right now is waited for and then re-checked against the committed
        row, so a sweep never marks silent, or enrols into a silent_for SOP, someone who has just written."""
        low, high = since - timedelta(days=days), now - timedelta(days=days)
        seen = func.coalesce(_C.last_inbound_at, _C.added_at)
        rows = conn.execute(select(_C.id, _C.last_inbound_at, _C.added_at, _C.last_order_at).where(
            _C.stage != "churned",
            ((seen > low) & (seen <= high)) | ((_C.last_order_at > low) & (_C.last_order_at <= high)))
            .with_for_update()).all()
        crossed = []
        for cid, last_in, added, last_order in rows:
            last_seen = max(as_utc(t) for t in (last_in, added, last_order) if t is not None)
            if low < last_seen <= high:
                crossed.append((cid, last_seen))
        return crossed

    # ------------------------------------------------------------------ outbox

    def dispatch_outbox(self, shard: int | None = None, guard: Callable[[], None] | None = None) -> int:
        """Send, defer or cancel every outbox row due now (of one customer shard, if given); returns how many
        rows were settled. ``guard`` runs before each batch is sent."""
        handled = 0
        batch = self.deps.settings.worker_batch
        query = _OUT_NOW if shard is None else _OUT_NOW.where(_O.shard == shard)
        while True:
            now = self.deps.clock.now()
            with self.deps.engine.connect() as conn:
                rows = conn.execute(query, {"now": as_utc(now), "n": batch}).mappings().all()
                if not rows:
                    return handled
                contacts = self._contacts(conn, rows, now)
            if guard is not None:
                guard()
            self._settle(rows, contacts, now)
            handled += len(rows)

    def _contacts(self, conn: Connection, rows: list[Any], now: datetime) -> dict[str, Contact]:
        ids = list({r["customer_id"] for r in rows})
        contacts: dict[str, Contact] = {i: Contact() for i in ids}
        suppressing = [s.id for s in self.deps.library.sops.values() if s.suppresses_marketing]
        for r in run_in(conn, _STATES_IN, ids):
            c = contacts[r.customer_id]
            c.last_marketing_at, c.last_touch, c.day, c.day_count = r.last_marketing_at, r.last_touch, r.day, r.day_count
            c.kf_window, c.kf_sent = r.kf_window, r.kf_sent
        for cid, unsub, stage, last_in in run_in(conn, _CONTACT_CUSTOMERS_IN, ids):
            contacts[cid].unsubscribed = unsub is not None
            contacts[cid].churned = stage == "churned"
            contacts[cid].last_inbound_at = last_in
        batch = {r["id"] for r in rows}
        tomorrow = self.deps.shop.at(self.deps.shop.local(now).date() + timedelta(days=1), clock_time(0, 0))
        for row_id, cid, payload in run_in(conn, _DUE_TODAY_IN, ids, until=as_utc(tomorrow)):
            if (payload or {}).get("priority") and row_id not in batch:
                contacts[cid].reserved += 1
        if suppressing:
            for cid, sop_id in run_in(conn, _LIVE_SOPS_IN, ids, sops=suppressing):
                contacts[cid].suppressed_by = self.deps.library.sops[sop_id].name
        return contacts

    def _settle(self, rows: list[Any], contacts: dict[str, Contact], now: datetime) -> None:
        deps = self.deps
        sends: list[tuple[Any, str]] = []
        defers: list[tuple[Any, Decision]] = []
        cancels: list[tuple[Any, Decision]] = []
        # time-critical rows of a batch take a customer's slots before generic ones (stable: otherwise in order)
        for row in sorted(rows, key=lambda r: -int(r["payload"].get("priority") or 0)):
            contact = contacts[row["customer_id"]]
            suppressed = contact.suppressed_by
            if contact.suppressed_by and row["sop_id"] and deps.library.sops.get(row["sop_id"]) and \
                    deps.library.sops[row["sop_id"]].suppresses_marketing:
                contact.suppressed_by = None  # the complaint SOP itself may speak
            decision = deps.policy.decide(marketing=row["marketing"], touch=row["touch"], contact=contact, now=now,
                                          priority=int(row["payload"].get("priority") or 0))
            contact.suppressed_by = suppressed
            expires = row["payload"].get("expires_at")
            if decision.verdict == "defer" and expires and decision.until > datetime.fromisoformat(expires):
                decision = Decision("cancel", reason=f"{decision.reason}; expired before the next allowed slot")
            if decision.verdict == "send":
                mode = row["mode"]
                last_in = contact.last_inbound_at
                if mode == "kf" and row["customer_id"] != BROADCAST:
                    mode = self._kf_mode(contact, last_in, now)
                if row["marketing"]:
                    deps.policy.record_send(contact, row["touch"], now)
                sends.append((row, mode))
            elif decision.verdict == "defer":
                defers.append((row, decision))
            else:
                cancels.append((row, decision))
        if sends:
            deps.channel.deliver([
                Delivery(key=row["key"], customer_id=row["customer_id"], action=row["action"], mode=mode,
                         touchpoint=row["touchpoint"], at=now, payload=dict(row["payload"])) for row, mode in sends])
        effects = Effects()
        with deps.engine.begin() as conn:
            by_mode: dict[str, list[int]] = defaultdict(list)
            for row, mode in sends:
                by_mode[mode].append(row["id"])
            for mode, ids in by_mode.items():
                run_in(conn, _SENT_IN, ids, at=as_utc(now), sent_mode=mode)
            if sends:
                insert_ignore(conn, EmployeeTask.__table__, [self._task(row, mode, now) for row, mode in sends
                                                             if mode in TASK_MODES])
            for row, decision in defers:
                conn.execute(update(Outbox.__table__).where(_O.id == row["id"]).values(
                    not_before=as_utc(decision.until), defer_count=_O.defer_count + 1,
                    last_deferral=decision.reason))
                if row["action"] == "ask" and row["run_id"]:
                    _postpone_timeout(conn, row, as_utc(decision.until) - as_utc(row["not_before"]))
                effects.note(customer_id=row["customer_id"], at=now, kind="deferred", run_id=row["run_id"],
                             key=f"defer/{row['key']}/{row['defer_count'] + 1}",
                             summary=f"推迟「{row['step_id']}」到 {deps.shop.local(decision.until):%m-%d %H:%M}"
                                     f"（{decision.reason}）",
                             detail={"outbox": row["key"], "until": as_utc(decision.until).isoformat(),
                                     "reason": decision.reason})
            for row, decision in cancels:
                conn.execute(update(Outbox.__table__).where(_O.id == row["id"]).values(
                    status="cancelled", last_deferral=decision.reason))
                effects.note(customer_id=row["customer_id"], at=now, kind="cancelled", run_id=row["run_id"],
                             key=f"cancel/{row['key']}", summary=f"取消「{row['step_id']}」（{decision.reason}）")
            touched = {row["customer_id"] for row, mode in sends if row["marketing"] or mode == "kf"}
            self._save_contacts(conn, {cid: contacts[cid] for cid in touched})
            effects.flush(conn)
        self.stats["sent"] += len(sends)
        for _, mode in sends:
            self.stats[f"sent:{mode}"] += 1
        self.stats["deferred"] += len(defers)
        self.stats["cancelled"] += len(cancels)

    @staticmethod
    def _kf_mode(contact: Contact, last_in: datetime | None, now: datetime) -> str:
        """kf while WeCom lets the agent send (48 h after the customer's message, 5 per message), else an
        employee task: what the agent may not send is handed to a human, never dropped."""
        if last_in is None or now - as_utc(last_in) > KF_WINDOW:
            return "member_task"
        if contact.kf_window is None or as_utc(contact.kf_window) != as_utc(last_in):
            contact.kf_window, contact.kf_sent = last_in, 0
        if contact.kf_sent >= KF_PER_MESSAGE:
            return "member_task"
        contact.kf_sent += 1
        return "kf"

    def _task(self, row: Any, mode: str, now: datetime) -> dict[str, Any]:
        payload = dict(row["payload"])
        assignee = payload.get("assignee") or ("group_owner" if mode == "group_task" else "owner")
        title = payload.get("title") or f"发送「{row['step_id']}」给客户"
        due = payload.get("due_at") or as_utc(now).isoformat()
        return {"key": row["key"], "customer_id": row["customer_id"], "assignee": assignee, "kind": TASK_MODES[mode],
                "title": title, "content": payload, "due_at": datetime.fromisoformat(due), "status": "open",
                "created_at": as_utc(now)}

    def _save_contacts(self, conn: Connection, contacts: dict[str, Contact]) -> None:
        if not contacts:
            return
        ids = list(contacts)
        run_in(conn, _FORGET_CONTACTS_IN, ids)
        insert_many(conn, ContactState.__table__, [
            {"customer_id": cid, "last_marketing_at": as_utc(c.last_marketing_at) if c.last_marketing_at else None,
             "last_touch": c.last_touch, "day": c.day, "day_count": c.day_count,
             "kf_window": as_utc(c.kf_window) if c.kf_window else None, "kf_sent": c.kf_sent}
            for cid, c in contacts.items()])


def _enrol_origin(row: Any) -> Origin:
    """An enrolment that answers the customer's own action is service; any other is marketing."""
    return "customer" if row["payload"].get("reply") else "timer"
