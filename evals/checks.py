"""Assertions of a case, evaluated against the case's database after a step or at the end.

Each check returns an :class:`Outcome` (passed, a one-line description, a diff on failure) and adds
to the metrics it informs (step adherence, tags, facts, handoffs, policy).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from agent.tables import Message
from knowledge.clock import ShopTime, as_utc
from knowledge.tables import Customer, CustomerTag, ProfileFact
from sop_graphs.tables import CouponLedger, EmployeeTask, Outbox, SopRun

_O, _R = Outbox.__table__.c, SopRun.__table__.c


@dataclass
class Outcome:
    passed: bool
    what: str
    diff: str = ""


@dataclass
class Tally:
    """Counts behind the aggregate metrics."""

    sop_checks: int = 0
    sop_passed: int = 0
    tags_expected: int = 0
    tags_found: int = 0
    tags_forbidden: int = 0
    tags_forbidden_found: int = 0
    facts_expected: int = 0
    facts_found: int = 0
    handoff_tp: int = 0
    handoff_fp: int = 0
    handoff_fn: int = 0
    policy_violations: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Context:
    engine: Engine
    shop: ShopTime
    cap: int
    quiet: tuple[Any, Any]
    customer: str
    last_replies: list[str] = field(default_factory=list)
    last_tools: list[dict[str, Any]] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def project(engine: Engine) -> dict[str, Any]:
    """The database state the ``state`` and ``state_hash`` assertions compare (τ-bench style)."""
    with engine.connect() as conn:
        tags: dict[str, list[str]] = defaultdict(list)
        for cid, tag in conn.execute(select(CustomerTag.customer_id, CustomerTag.tag).order_by(CustomerTag.tag)):
            tags[cid].append(tag)
        customers = {r["id"]: {"stage": r["stage"], "tags": tags.get(r["id"], []), "attributes": r["attributes"],
                               "unsubscribed": r["unsubscribed_at"] is not None, "bot_paused": r["bot_paused"],
                               "orders_count": r["orders_count"]}
                     for r in conn.execute(select(Customer.__table__).order_by(Customer.id)).mappings()}
        runs: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for cid, sop, status in conn.execute(select(_R.customer_id, _R.sop_id, _R.status).order_by(_R.started_at)):
            runs[cid][sop].append(status)
        coupons: dict[str, list[str]] = defaultdict(list)
        for cid, campaign in conn.execute(select(CouponLedger.customer_id, CouponLedger.campaign_id)
                                          .order_by(CouponLedger.campaign_id)):
            coupons[cid].append(campaign)
        tasks = Counter(k for (k,) in conn.execute(select(EmployeeTask.kind)))
    return {"customers": customers, "runs": {c: dict(v) for c, v in runs.items()}, "coupons": dict(coupons),
            "tasks": dict(sorted(tasks.items()))}


def state_hash(state: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Field-level differences for the keys ``expected`` names (other keys are not compared)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{path}{key}: expected {value!r}, missing")
            else:
                out += _diff(value, actual[key], f"{path}{key}.")
        return out
    if expected != actual:
        return [f"{path.rstrip('.')}: expected {expected!r}, got {actual!r}"]
    return []


class Checker:
    """Evaluates one assertion mapping at a time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def run(self, assertion: dict[str, Any]) -> Outcome:
        (name, arg), = assertion.items()
        return getattr(self, f"_{name}")(arg)

    # -------------------------------------------------------------- rows

    def _sent(self, customer: str | None = None) -> list[Any]:
        query = select(Outbox.__table__).where(_O.action != "tag")
        if customer:
            query = query.where(_O.customer_id == customer)
        with self.ctx.engine.connect() as conn:
            return list(conn.execute(query.order_by(_O.id)).mappings())

    def _customer_row(self, cid: str) -> Any:
        with self.ctx.engine.connect() as conn:
            return conn.execute(select(Customer.__table__).where(Customer.__table__.c.id == cid)).mappings().first()

    def _cid(self, arg: Any) -> str:
        return arg.get("customer", self.ctx.customer) if isinstance(arg, dict) else self.ctx.customer

    # -------------------------------------------------------------- replies and tools

    def _reply_contains(self, arg: Any) -> Outcome:
        text = "\n".join(self.ctx.last_replies)
        missing = [s for s in map(str, _as_list(arg)) if s not in text]
        self.ctx.tally.facts_expected += len(_as_list(arg))
        self.ctx.tally.facts_found += len(_as_list(arg)) - len(missing)
        return Outcome(not missing, f"reply contains {_as_list(arg)}", f"missing {missing} in: {text!r}")

    def _reply_not_contains(self, arg: Any) -> Outcome:
        text = "\n".join(self.ctx.last_replies)
        found = [s for s in map(str, _as_list(arg)) if s in text]
        return Outcome(not found, f"reply has none of {_as_list(arg)}", f"found {found} in: {text!r}")

    def _reply_any(self, arg: Any) -> Outcome:
        text = "\n".join(self.ctx.last_replies)
        return Outcome(any(str(s) in text for s in _as_list(arg)), f"reply contains one of {_as_list(arg)}",
                       f"none in: {text!r}")

    def _no_reply(self, arg: Any) -> Outcome:
        return Outcome(bool(arg) == (not self.ctx.last_replies), f"no reply is {bool(arg)}",
                       f"replies: {self.ctx.last_replies!r}")

    def _tool_called(self, arg: dict[str, Any]) -> Outcome:
        want_args = arg.get("args", {})
        hit = any(c["name"] == arg["name"] and all(c["args"].get(k) == v for k, v in want_args.items())
                  for c in self.ctx.last_tools)
        return Outcome(hit, f"tool {arg['name']}({want_args}) called", f"calls: {self.ctx.last_tools!r}")

    def _tool_not_called(self, arg: dict[str, Any]) -> Outcome:
        outcome = self._tool_called(arg)
        return Outcome(not outcome.passed, f"tool {arg['name']}({arg.get('args', {})}) not called", outcome.diff)

    # -------------------------------------------------------------- SOPs

    def _sop(self, arg: dict[str, Any]) -> Outcome:
        cid = self._cid(arg)
        with self.ctx.engine.connect() as conn:
            runs = list(conn.execute(select(SopRun.__table__).where(_R.customer_id == cid, _R.sop_id == arg["id"]))
                        .mappings())
        self.ctx.tally.sop_checks += 1
        what = f"SOP {arg['id']}" + "".join(f" {k}={arg[k]}" for k in ("step", "status", "waiting") if k in arg)
        if not runs:
            return Outcome(False, what, f"{cid} was never enrolled in {arg['id']}")
        ok = True
        got = [{"status": r["status"], "current_step": r["current_step"], "waiting": r["waiting"]} for r in runs]
        if "status" in arg:
            wanted = arg["status"]
            ok &= any(r["status"] == wanted or (wanted == "live" and r["status"] in ("active", "scheduled"))
                      for r in runs)
        if "step" in arg:
            run_ids = {r["id"] for r in runs}
            reached = any(r["current_step"] == arg["step"] for r in runs) or any(
                o["run_id"] in run_ids and o["step_id"] == arg["step"] for o in self._sent(cid))
            ok &= reached
        if "waiting" in arg:
            ok &= any((r["waiting"] or "").split(":")[1:2] == [arg["waiting"]] for r in runs)
        self.ctx.tally.sop_passed += ok
        return Outcome(ok, what, f"runs: {got}")

    def _not_enrolled(self, arg: Any) -> Outcome:
        sop_id = arg if isinstance(arg, str) else arg["id"]
        cid = self._cid(arg)
        with self.ctx.engine.connect() as conn:
            n = len(conn.execute(select(_R.id).where(_R.customer_id == cid, _R.sop_id == sop_id)).all())
        return Outcome(n == 0, f"{cid} not enrolled in {sop_id}", f"{n} run(s)")

    # -------------------------------------------------------------- profile

    def _slot(self, arg: dict[str, Any]) -> Outcome:
        cid = self._cid(arg)
        attributes = (self._customer_row(cid) or {}).get("attributes") or {}
        wanted = {k: v for k, v in arg.items() if k != "customer"}
        diff = _diff(wanted, attributes)
        return Outcome(not diff, f"slots {wanted}", "; ".join(diff))

    def _fact(self, arg: dict[str, Any]) -> Outcome:
        cid = self._cid(arg)
        with self.ctx.engine.connect() as conn:
            facts = {k: v for k, v in conn.execute(select(ProfileFact.key, ProfileFact.value).where(
                ProfileFact.customer_id == cid, ProfileFact.current.is_(True)))}
        wanted = {k: str(v) for k, v in arg.items() if k != "customer"}
        diff = _diff(wanted, facts)
        return Outcome(not diff, f"facts {wanted}", "; ".join(diff) + f" (facts: {facts})")

    def _tags(self, arg: dict[str, Any]) -> Outcome:
        cid = self._cid(arg)
        with self.ctx.engine.connect() as conn:
            have = set(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == cid)).scalars())
        include, exclude = set(arg.get("include", [])), set(arg.get("exclude", []))
        t = self.ctx.tally
        t.tags_expected += len(include)
        t.tags_found += len(include & have)
        t.tags_forbidden += len(exclude)
        t.tags_forbidden_found += len(exclude & have)
        ok = include <= have and not (exclude & have)
        return Outcome(ok, f"tags +{sorted(include)} -{sorted(exclude)}",
                       f"missing {sorted(include - have)}, unwanted {sorted(exclude & have)}; tags: {sorted(have)}")

    def _stage(self, arg: Any) -> Outcome:
        cid = self._cid(arg)
        wanted = arg["is"] if isinstance(arg, dict) else arg
        stage = (self._customer_row(cid) or {}).get("stage")
        return Outcome(stage == wanted, f"stage {wanted}", f"got {stage}")

    def _unsubscribed(self, arg: Any) -> Outcome:
        row = self._customer_row(self.ctx.customer) or {}
        return Outcome((row.get("unsubscribed_at") is not None) == bool(arg), f"unsubscribed is {bool(arg)}",
                       f"unsubscribed_at {row.get('unsubscribed_at')}")

    def _bot_paused(self, arg: Any) -> Outcome:
        row = self._customer_row(self.ctx.customer) or {}
        return Outcome(bool(row.get("bot_paused")) == bool(arg), f"bot paused is {bool(arg)}",
                       f"bot_paused {row.get('bot_paused')}")

    # -------------------------------------------------------------- coupons, tasks, sends

    def _coupon(self, arg: dict[str, Any]) -> Outcome:
        cid = self._cid(arg)
        with self.ctx.engine.connect() as conn:
            ledger = len(conn.execute(select(CouponLedger.code).where(
                CouponLedger.customer_id == cid, CouponLedger.campaign_id == arg["campaign"])).all())
        sends = [o for o in self._sent(cid) if o["action"] == "coupon"
                 and o["payload"].get("campaign") == arg["campaign"]]
        count = arg.get("count", 1)
        ok = ledger == min(count, 1) and len(sends) == count
        return Outcome(ok, f"coupon {arg['campaign']} issued {count}×", f"ledger {ledger}, sends {len(sends)}")

    def _handoff(self, arg: Any) -> Outcome:
        cid = self.ctx.customer
        with self.ctx.engine.connect() as conn:
            tasks = len(conn.execute(select(EmployeeTask.id).where(EmployeeTask.customer_id == cid,
                                                                   EmployeeTask.kind == "handoff")).all())
        actual, wanted = tasks > 0, bool(arg)
        t = self.ctx.tally
        t.handoff_tp += actual and wanted
        t.handoff_fp += actual and not wanted
        t.handoff_fn += wanted and not actual
        return Outcome(actual == wanted, f"handoff is {wanted}", f"{tasks} handoff task(s)")

    def _task(self, arg: dict[str, Any]) -> Outcome:
        cid = self._cid(arg)
        with self.ctx.engine.connect() as conn:
            rows = list(conn.execute(select(EmployeeTask.__table__).where(EmployeeTask.customer_id == cid))
                        .mappings())
        hits = [r for r in rows if all(r.get(k) == v for k, v in arg.items() if k in ("kind", "assignee"))]
        if "title_contains" in arg:
            hits = [r for r in hits if arg["title_contains"] in r["title"]]
        count = arg.get("count")
        ok = len(hits) == count if count is not None else bool(hits)
        return Outcome(ok, f"task {arg}", f"tasks: {[(r['kind'], r['assignee'], r['title']) for r in rows]}")

    def _sends(self, arg: dict[str, Any]) -> Outcome:
        rows = [o for o in self._sent(self._cid(arg)) if o["status"] == "sent"]
        for key in ("sop_id", "step_id", "action", "mode"):
            short = key.removesuffix("_id")
            if short in arg or key in arg:
                rows = [o for o in rows if o[key] == arg.get(short, arg.get(key))]
        n = len(rows)
        ok = True
        if "count" in arg:
            ok &= n == arg["count"]
        if "max" in arg:
            ok &= n <= arg["max"]
        if "min" in arg:
            ok &= n >= arg["min"]
        elif "count" not in arg and "max" not in arg:
            ok &= n > 0  # no bound given: at least one
        return Outcome(ok, f"sends {arg}", f"{n} matching send(s)")

    def _mode_used(self, arg: dict[str, Any]) -> Outcome:
        return self._sends({"step": arg["step"], "mode": arg["mode"], "min": 1, **(
            {"customer": arg["customer"]} if "customer" in arg else {})})

    def _quiet_hours_respected(self, arg: Any) -> Outcome:
        bad = self.quiet_violations()
        return Outcome(not bad, "no marketing in quiet hours", f"sent in quiet hours: {bad}")

    def _cap_respected(self, arg: Any) -> Outcome:
        bad = self.cap_violations()
        return Outcome(not bad, "daily cap respected", f"over the cap: {bad}")

    def quiet_violations(self) -> list[str]:
        start, end = self.ctx.quiet
        bad = []
        for o in self._sent():
            if o["status"] != "sent" or not o["marketing"] or o["touchpoint"] != "private":
                continue
            local = self.ctx.shop.local(as_utc(o["sent_at"])).time()
            if (local >= start or local < end) if start > end else start <= local < end:
                bad.append(f"{o['key']} at {local:%H:%M}")
        return bad

    def cap_violations(self) -> list[str]:
        touches: dict[tuple[str, str], set[str]] = defaultdict(set)
        for o in self._sent():
            if o["status"] == "sent" and o["marketing"] and o["touchpoint"] == "private":
                day = self.ctx.shop.local(as_utc(o["sent_at"])).date().isoformat()
                touches[(o["customer_id"], day)].add(o["touch"] or o["key"])
        return [f"{cid} {day}: {len(t)} touches" for (cid, day), t in touches.items() if len(t) > self.ctx.cap]

    # -------------------------------------------------------------- database state

    def _state(self, arg: dict[str, Any]) -> Outcome:
        diff = _diff(arg, project(self.ctx.engine))
        return Outcome(not diff, "database state matches", "\n".join(diff))

    def _state_hash(self, arg: str) -> Outcome:
        actual = state_hash(project(self.ctx.engine))
        return Outcome(actual == arg, "database state hash matches", f"expected {arg}, got {actual}")


def transcript_tools(engine: Engine, customer: str, since_id: int) -> list[dict[str, Any]]:
    """Tool calls recorded on the replies written after message ``since_id``."""
    with engine.connect() as conn:
        metas = conn.execute(select(Message.meta).where(Message.customer_id == customer, Message.id > since_id,
                                                        Message.direction == "out")).scalars()
        return [call for meta in metas for call in (meta or {}).get("tools", [])]
