"""Admission into a SOP: audience, family ownership and re-enrolment rules, one customer or many at once."""

from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from agent.inbound import submit
from knowledge.tables import Customer, TimelineEntry
from sop_graphs.effects import Effects
from sop_graphs.enrolment import Entry, admit_many
from sop_graphs.tables import SopRun

REACTIVATION = "silent_reactivation"  # audience: stage silent; family reactivation; re-enrol after 60 days


@pytest.fixture
def spec(runtime):
    return runtime.deps.library.sops[REACTIVATION]


def _customers(runtime, stages: dict[str, str]) -> None:
    for cid in stages:
        submit(runtime.deps, key=f"add-{cid}", customer_id=cid, kind="customer_added", payload={"name": cid},
               at=runtime.deps.clock.now())
    runtime.tick()
    with runtime.deps.engine.begin() as conn:
        for cid, stage in stages.items():
            conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == cid).values(stage=stage))


def _admit(runtime, entries: list[Entry], days_later: int = 0) -> tuple[list[str | None], dict[str, str]]:
    deps = runtime.deps
    effects = Effects()
    with deps.engine.begin() as conn:
        admitted = [a.run_id for a in admit_many(conn, effects, entries, deps.clock.now() + timedelta(days=days_later))]
        effects.flush(conn)
    t = TimelineEntry.__table__.c
    with deps.engine.connect() as conn:
        skipped = {cid: detail["reason"] for cid, detail in conn.execute(select(t.customer_id, t.detail)
                                                                         .where(t.kind == "skipped"))}
    return admitted, skipped


def test_each_customer_is_admitted_or_refused_with_its_reason(runtime, spec):
    _customers(runtime, {"silent1": "silent", "active1": "active", "gone1": "churned"})
    admitted, skipped = _admit(runtime, [Entry(spec, c, "t1", "test") for c in ("silent1", "active1", "gone1", "nobody")])
    assert admitted == [f"{REACTIVATION}/silent1/t1", None, None, None]
    assert skipped == {"active1": "not in the audience", "gone1": "customer deleted us", "nobody": "unknown customer"}


def test_a_customer_listed_twice_in_one_batch_gets_one_run(runtime, spec):
    _customers(runtime, {"silent1": "silent"})
    admitted, skipped = _admit(runtime, [Entry(spec, "silent1", "t1", "test"), Entry(spec, "silent1", "t2", "test")])
    assert admitted == [f"{REACTIVATION}/silent1/t1", None]
    assert skipped["silent1"].startswith("already in a reactivation SOP")


def test_an_admitted_entry_asked_again_returns_its_live_run(runtime, spec):
    _customers(runtime, {"silent1": "silent"})
    _admit(runtime, [Entry(spec, "silent1", "t1", "test")])
    effects = Effects()
    with runtime.deps.engine.begin() as conn:
        again = admit_many(conn, effects, [Entry(spec, "silent1", "t1", "test")], runtime.deps.clock.now())
    assert again[0].run_id == f"{REACTIVATION}/silent1/t1"
    assert not again[0].new  # its graph thread may exist: the worker recovers it instead of starting anew


def test_reenrolment_waits_for_the_sops_interval(runtime, spec):
    _customers(runtime, {"silent1": "silent"})
    _admit(runtime, [Entry(spec, "silent1", "t1", "test")])
    with runtime.deps.engine.begin() as conn:
        conn.execute(update(SopRun.__table__).values(status="completed"))
    early, skipped = _admit(runtime, [Entry(spec, "silent1", "t2", "test")], days_later=30)
    late, _ = _admit(runtime, [Entry(spec, "silent1", "t3", "test")], days_later=61)
    assert early == [None] and skipped["silent1"] == "re-enrolment allowed after 60 days"
    assert late == [f"{REACTIVATION}/silent1/t3"]


def test_admission_reads_runs_by_customer_never_by_scanning_a_sop(runtime, spec):
    """At 100k runs a query that filters runs by SOP first walks every run of that SOP per batch."""
    _customers(runtime, {"silent1": "silent"})
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("SELECT") and "soprun" in statement:
            statements.append((statement, parameters))

    engine = runtime.deps.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        _admit(runtime, [Entry(spec, "silent1", "t1", "test")])
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        plans = [" ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all())
                 for sql, params in statements]
    assert plans
    for plan in plans:
        assert "ix_soprun_sop_id" not in plan and "SCAN soprun" not in plan, plan


def test_unsubscribed_customer_is_never_enrolled_in_a_marketing_sop(runtime, spec):
    _customers(runtime, {"silent1": "silent"})
    with runtime.deps.engine.begin() as conn:
        conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == "silent1")
                     .values(unsubscribed_at=runtime.deps.clock.now()))
    admitted, skipped = _admit(runtime, [Entry(spec, "silent1", "t1", "test")])
    assert admitted == [None] and skipped == {"silent1": "customer unsubscribed from marketing"}


def test_unsubscribed_customer_still_enters_a_service_sop(runtime):
    complaint = runtime.deps.library.sops["complaint_handling"]
    _customers(runtime, {"c1": "active"})
    with runtime.deps.engine.begin() as conn:
        conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == "c1")
                     .values(unsubscribed_at=runtime.deps.clock.now()))
    admitted, _ = _admit(runtime, [Entry(complaint, "c1", "t1", "test")])
    assert admitted == ["complaint_handling/c1/t1"]


def test_anonymous_web_visitor_is_not_enrolled_in_a_coupon_sop(runtime):
    launch = runtime.deps.library.sops["new_product_launch"]
    _customers(runtime, {"web_1a2b": "active"})
    admitted, skipped = _admit(runtime, [Entry(launch, "web_1a2b", "t1", "test")])
    assert admitted == [None] and skipped["web_1a2b"].startswith("anonymous web visitor")


def test_a_coupon_sop_whose_audience_names_web_admits_web_visitors(runtime):
    launch = runtime.deps.library.sops["new_product_launch"]
    opened = launch.model_copy(update={"audience": launch.audience.model_copy(update={"channel_codes": ["web"],
                                                                                     "tags_any": []})})
    _customers(runtime, {"web_1a2b": "active"})
    with runtime.deps.engine.begin() as conn:
        conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == "web_1a2b")
                     .values(channel_code="web"))
    admitted, _ = _admit(runtime, [Entry(opened, "web_1a2b", "t1", "test")])
    assert admitted == ["new_product_launch/web_1a2b/t1"]
