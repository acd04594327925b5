"""The demo-data player: a small shop played through the real pipeline gives the daily report real data."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.runtime import Runtime
from agent.tables import InboundEvent, Message
from api.report.demo_data import PlaySummary, inbound_digest, load_data, play
from api.tables import AuditLog, SopVersion
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer, ShopOrder, TimelineEntry
from sop_graphs.customers import BROADCAST
from sop_graphs.tables import CouponLedger, EmployeeTask, SopRun

MONDAY_MIDNIGHT_SHANGHAI = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
PLAY = {"days": 5, "customers": 40, "seed": 11, "dip_day": 4, "edit_day": 2}
_I, _M, _C, _K = InboundEvent.__table__.c, Message.__table__.c, Customer.__table__.c, EmployeeTask.__table__.c


@dataclass
class Played:
    runtime: Runtime
    summary: PlaySummary
    home: Path


def _runtime(home: Path, models_from: Path | None = None) -> Runtime:
    if models_from is not None and (models_from / "models").exists():  # the trained classifier: no retraining
        shutil.copytree(models_from / "models", home / "models")
    return Runtime.build(Settings(home=home, embedder="hash"), clock=SimClock(MONDAY_MIDNIGHT_SHANGHAI))


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    home = tmp_path_factory.mktemp("demo") / "home"
    runtime = _runtime(home)
    yield Played(runtime, play(runtime, **PLAY), home)


def _events(played: Played, kind: str) -> list[tuple[str, dict, datetime]]:
    with played.runtime.deps.engine.connect() as conn:
        return [(cid, payload, at) for cid, payload, at in conn.execute(
            select(_I.customer_id, _I.payload, _I.received_at).where(_I.kind == kind).order_by(_I.received_at, _I.id))]


def test_customers_arrive_through_contact_codes_with_their_owners(played: Played) -> None:
    channels = {c["code"]: c for c in load_data()["channels"]}
    with played.runtime.deps.engine.connect() as conn:
        rows = conn.execute(select(_C.id, _C.name, _C.owner, _C.channel_code)).all()
    assert len(rows) == played.summary.customers == PLAY["customers"]
    assert all(name and owner for _, name, owner, _ in rows)
    assert all(code in channels and owner in channels[code]["owners"] for _, _, owner, code in rows)
    assert len({code for *_, code in rows if code}) >= 3
    assert len({owner for _, _, owner, _ in rows}) >= 3


def test_customers_write_and_are_answered(played: Played) -> None:
    with played.runtime.deps.engine.connect() as conn:
        inbound = conn.execute(select(_M.customer_id).where(_M.direction == "in")).scalars().all()
        replies = conn.execute(select(_M.customer_id, _M.meta).where(_M.direction == "out", _M.key.like("out/%"))).all()
    assert len(inbound) == played.summary.messages > PLAY["customers"]
    assert len(set(inbound)) >= PLAY["customers"] // 2
    assert {cid for cid, _ in replies} >= {cid for cid, meta in replies if meta and "intent" in meta}
    assert played.summary.replies == sum(1 for _, meta in replies if meta and "intent" in meta) > 10


def test_questionnaire_answers_are_partial(played: Played) -> None:
    with played.runtime.deps.engine.connect() as conn:
        kinds = conn.execute(select(TimelineEntry.__table__.c.kind).join(
            SopRun.__table__, SopRun.__table__.c.id == TimelineEntry.__table__.c.run_id).where(
            SopRun.__table__.c.sop_id == "new_customer_nurture")).scalars().all()
    assert kinds.count("answer") > 0 and kinds.count("ask_timeout") > 0
    assert played.summary.answers > 0


def test_some_questions_are_not_answered_by_the_shop_knowledge(played: Played) -> None:
    with played.runtime.deps.engine.connect() as conn:
        metas = conn.execute(select(_M.meta).where(_M.direction == "out")).scalars().all()
    ungrounded = [m for m in metas if m and m.get("grounded") is False]
    assert played.summary.gap_questions > 0
    assert 0 < len(ungrounded) == played.summary.unanswered < played.summary.replies


def test_paid_orders_are_recorded_with_coupons_an_sop_issued(played: Played) -> None:
    paid = [(cid, p) for cid, p, _ in _events(played, "order") if p["event"] == "paid"]
    assert len(paid) == played.summary.orders > 0
    assert all(p["order_id"] and p["amount"] > 0 and p["items"] for _, p in paid)
    with played.runtime.deps.engine.connect() as conn:
        ledger = set(conn.execute(select(CouponLedger.__table__.c.customer_id, CouponLedger.__table__.c.code)).all())
        shop_orders = dict(conn.execute(select(ShopOrder.__table__.c.order_no, ShopOrder.__table__.c.customer_id)).all())
        buyers = conn.execute(select(_C.id).where(_C.orders_count > 0)).scalars().all()
        statuses = set(conn.execute(select(_I.status).where(_I.kind == "order")).scalars())
    coupons = [(cid, p["coupon"]) for cid, p in paid if "coupon" in p]
    assert coupons and all(pair in ledger for pair in coupons)
    assert all(shop_orders[p["order_id"]] == cid for cid, p in paid)
    assert set(buyers) == {cid for cid, _ in paid}
    assert statuses == {"done"}
    assert {p["event"] for _, p, _ in _events(played, "order")} >= {"paid", "shipped", "delivered"}


def test_members_check_in_less_on_the_dip_day(played: Played) -> None:
    checkins = [(cid, p) for cid, p, _ in _events(played, "behaviour") if p["event"] == "group_checkin"]
    joined = {(cid, p["group"]) for cid, p, _ in _events(played, "behaviour") if p["event"] == "group_joined"}
    assert len(checkins) == played.summary.checkins > 0
    assert all((cid, p["group"]) in joined for cid, p in checkins)
    rates = played.summary.checkin_rate_by_day
    dip = rates[PLAY["dip_day"]]
    others = [rate for day, rate in rates.items() if day != PLAY["dip_day"]]
    assert others and dip < 0.7 * (sum(others) / len(others))


def test_employees_complete_most_tasks_at_the_simulated_time(played: Played) -> None:
    with played.runtime.deps.engine.connect() as conn:
        tasks = conn.execute(select(_K.id, _K.kind, _K.status, _K.created_at, _K.done_at, _K.customer_id)).all()
        completions = conn.execute(select(_I.payload).where(_I.kind == "task_completed")).scalars().all()
    done = [t for t in tasks if t.status == "done"]
    assert len(done) == played.summary.tasks_completed and len(tasks) == played.summary.tasks_created
    assert all(t.done_at is not None and t.done_at >= t.created_at for t in done)
    assert any(t.kind == "handoff" for t in done)
    assert any(t.status == "open" for t in tasks)
    # a customer's completed task is an event for that customer; a group or moments task is no one's
    assert {p["task_id"] for p in completions} == {t.id for t in done if t.customer_id != BROADCAST}


def test_the_sop_edit_publishes_a_second_version(played: Played) -> None:
    v, r = SopVersion.__table__.c, SopRun.__table__.c
    with played.runtime.deps.engine.connect() as conn:
        versions = conn.execute(select(v.version, v.status, v.created_by).where(v.sop_id == "new_customer_nurture")
                                .order_by(v.version)).all()
        run_versions = set(conn.execute(select(r.sop_version).where(r.sop_id == "new_customer_nurture")).scalars())
        audit = conn.execute(select(AuditLog.__table__.c.action).where(
            AuditLog.__table__.c.target == "new_customer_nurture")).scalars().all()
    assert [(n, status) for n, status, _ in versions] == [(1, "retired"), (2, "published")]
    assert played.runtime.deps.library.sops["new_customer_nurture"].version == 2
    assert run_versions == {1, 2}
    assert audit == ["sop.save", "sop.publish"]
    assert played.summary.sop_edits == 1 and played.summary.published == ["new_customer_nurture@2"]
    assert played.summary.problems == []


def test_the_same_seed_plays_the_same_shop(played: Played, tmp_path: Path) -> None:
    again = _runtime(tmp_path / "again", models_from=played.home)
    summary = play(again, **PLAY)
    assert summary.digest == inbound_digest(again) == played.summary.digest
    assert (summary.messages, summary.orders, summary.checkins, summary.tasks_completed) == \
        (played.summary.messages, played.summary.orders, played.summary.checkins, played.summary.tasks_completed)
    other = _runtime(tmp_path / "other", models_from=played.home)
    assert play(other, **(PLAY | {"seed": 12})).digest != played.summary.digest
