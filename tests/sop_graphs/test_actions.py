"""Coupon steps: one coupon per customer and campaign whatever runs ask, within a campaign's budget, also when a
worker batch issues many at once (their ledger rows wait in the batch's Effects and are written together)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.runtime import Runtime
from knowledge.batching import cached_reads, deferred_writes
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import TimelineEntry
from sop_graphs.actions import perform, preload_coupons
from sop_graphs.effects import Effects
from sop_graphs.tables import CouponLedger, Outbox

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
_L, _O, _T = CouponLedger.__table__.c, Outbox.__table__.c, TimelineEntry.__table__.c


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """The embedded runtime, on SQLite and on PostgreSQL (batch writes differ: column arrays there)."""
    url = request.getfixturevalue("postgres_database")() if request.param == "postgresql" else None
    settings = Settings(home=tmp_path / "home", embedder="hash", **({"database_url": url} if url else {}))
    built = Runtime.build(settings, clock=SimClock(AT))
    yield built
    built.deps.engine.dispose()


def _coupon(conn, runtime, effects: Effects, customer_id: str, run_id: str) -> None:
    spec = runtime.deps.library.sops["new_customer_nurture"]
    step = next(s for s in spec.steps if s.kind == "coupon")
    perform(conn, runtime.deps, effects, spec=spec, step=step, run_id=run_id, customer={"name": "小林"},
            customer_id=customer_id, tags=set(), occurrence="1", at=AT, origin="timer")


def _batch(runtime, asks: list[tuple[str, str]]) -> None:
    """Coupon steps performed as the worker performs a batch of pushes: one transaction, the customers' coupons
    preloaded, every write deferred to the end."""
    effects = Effects()
    with runtime.deps.engine.begin() as conn, deferred_writes(conn, effects), \
            cached_reads(conn, lambda cache: preload_coupons(conn, cache, [c for c, _ in asks])):
        for customer_id, run_id in asks:
            _coupon(conn, runtime, effects, customer_id, run_id)


def _state(runtime) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    with runtime.deps.engine.connect() as conn:
        ledger = [tuple(r) for r in conn.execute(select(_L.customer_id, _L.run_id).order_by(_L.customer_id))]
        sends = list(conn.execute(select(_O.key).where(_O.action == "coupon").order_by(_O.key)).scalars())
        skipped = list(conn.execute(select(_T.key).where(_T.kind == "coupon_skipped").order_by(_T.key)).scalars())
    return ledger, sends, skipped


def test_a_batch_gives_a_customer_one_coupon_of_a_campaign_when_two_runs_ask(runtime) -> None:
    _batch(runtime, [("c1", "r1"), ("c1", "r2"), ("c2", "r3")])
    ledger, sends, skipped = _state(runtime)
    assert ledger == [("c1", "r1"), ("c2", "r3")]
    assert [k.split("/")[0] for k in sends] == ["r1", "r3"]
    assert [k.split("/")[:2] for k in skipped] == [["dupcoupon", "r2"]]


def test_a_replayed_coupon_step_sends_the_same_coupon_once(runtime) -> None:
    _batch(runtime, [("c1", "r1")])
    _batch(runtime, [("c1", "r1")])  # the batch again, as after a crash before its rows were marked done
    ledger, sends, skipped = _state(runtime)
    assert ledger == [("c1", "r1")] and len(sends) == 1 and skipped == []


def test_a_coupon_another_run_holds_by_the_time_the_ledger_is_written_is_not_sent(runtime) -> None:
    effects = Effects()
    with runtime.deps.engine.begin() as conn:
        _coupon(conn, runtime, effects, "c1", "r2")  # decided while the customer held nothing
        conn.execute(CouponLedger.__table__.insert().values(customer_id="c1", campaign_id="newbie_20", code="X",
                                                            run_id="r1", issued_at=AT))  # another run got there first
        effects.flush(conn)
    ledger, sends, skipped = _state(runtime)
    assert ledger == [("c1", "r1")] and sends == []
    assert [k.split("/")[:2] for k in skipped] == [["dupcoupon", "r2"]]


@pytest.fixture
def budget_of_one(runtime) -> Iterator[None]:
    campaigns = runtime.deps.library.catalog.campaigns
    original = campaigns["newbie_20"]
    campaigns["newbie_20"] = original.model_copy(update={"budget": 1})
    yield
    campaigns["newbie_20"] = original


@pytest.mark.usefixtures("budget_of_one")
def test_a_campaign_budget_counts_the_coupons_still_waiting_in_the_batch(runtime) -> None:
    _batch(runtime, [("c1", "r1"), ("c2", "r2")])
    ledger, sends, skipped = _state(runtime)
    assert ledger == [("c1", "r1")] and len(sends) == 1
    assert [k.split("/")[:2] for k in skipped] == [["nocoupon", "r2"]]


@pytest.mark.usefixtures("budget_of_one")
def test_a_campaign_budget_counts_the_coupons_waiting_in_one_unit_of_work(runtime) -> None:
    effects = Effects()  # a graph node's own effects, outside any batch
    with runtime.deps.engine.begin() as conn:
        _coupon(conn, runtime, effects, "c1", "r1")
        _coupon(conn, runtime, effects, "c2", "r2")
        effects.flush(conn)
    ledger, _, skipped = _state(runtime)
    assert ledger == [("c1", "r1")]
    assert [k.split("/")[:2] for k in skipped] == [["nocoupon", "r2"]]
