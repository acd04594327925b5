"""The worker performs pure work (pushes, graph-free enrolments, timeouts leading to a pure tail) in
batches, with the same outcome as the graph would have had."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, select, update

from agent.inbound import submit
from agent.runtime import Runtime
from knowledge.clock import SimClock, as_utc
from knowledge.settings import Settings
from knowledge.tables import Customer, TimelineEntry
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags, schedule_enrolment
from sop_graphs.spec import Audience, Exit, ExitCondition, ScheduleTrigger
from sop_graphs.tables import DueTouchpoint, Outbox, SopRun
from tests.conftest import MONDAY_15_SHANGHAI

_R = SopRun.__table__.c
_D = DueTouchpoint.__table__.c
NURTURE = "new_customer_nurture"


def _add(runtime: Runtime, *customers: str) -> None:
    for cid in customers:
        submit(runtime.deps, key=f"add-{cid}", customer_id=cid, kind="customer_added", payload={"name": "小林"},
               at=runtime.deps.clock.now())


def _outcome(runtime: Runtime) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """What went out (key, action, mode) and what the timelines say (key, summary), in order."""
    sent = [(r["key"], r["action"], r["mode"]) for r in runtime.deps.channel.records()]
    t = TimelineEntry.__table__.c
    with runtime.deps.engine.connect() as conn:
        notes = [(k or "", s) for k, s in conn.execute(select(t.key, t.summary).order_by(t.customer_id, t.at, t.id))]
    return sent, notes


def test_timeout_leading_to_a_pure_tail_does_not_resume_the_graph(runtime, monkeypatch):
    _add(runtime, "c1")
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=1))

    def refuse(*_args, **_kwargs):
        raise AssertionError("the graph was resumed for a pure timeout")

    monkeypatch.setattr(runtime.runner, "resume", refuse)
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=3))
    actions = [r["action"] for r in runtime.deps.channel.records("c1")]
    assert actions == ["message", "ask", "group_invite", "coupon"]


def test_batched_timeouts_match_the_graph_path_exactly(tmp_path: Path):
    outcomes = []
    for name, batched in (("batched", True), ("graph", False)):
        runtime = Runtime.build(Settings(home=tmp_path / name, embedder="hash", burst_window_seconds=0),
                                clock=SimClock(MONDAY_15_SHANGHAI))
        if not batched:
            runtime.worker.timeouts = {}
        _add(runtime, "c1", "c2", "c3")
        runtime.run_until(MONDAY_15_SHANGHAI + timedelta(days=31))
        outcomes.append(_outcome(runtime))
    assert outcomes[0] == outcomes[1]
    nurture = [key for key, action, _ in outcomes[0][0] if key.startswith(NURTURE) and action != "tag"]
    assert len(nurture) == 27  # welcome, q1, invite, coupon and day 1/3/7/14/30 for each of three


def test_timeout_of_a_run_that_moved_on_is_a_no_op(runtime):
    _add(runtime, "c1")
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=1))
    with runtime.deps.engine.begin() as conn:  # as if the answer's resume committed just before the timeout
        conn.execute(update(SopRun.__table__).where(_R.sop_id == NURTURE).values(waiting=None, waiting_kind=None))
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=3))
    with runtime.deps.engine.connect() as conn:
        timeout = conn.execute(select(_D.status).where(_D.kind == "resume")).scalar()
    assert [r["action"] for r in runtime.deps.channel.records("c1")] == ["message", "ask"]
    assert timeout == "done"


def test_every_silent_customer_enters_the_graph_free_reactivation_sop(runtime):
    _add(runtime, *(f"c{i}" for i in range(30)))
    runtime.run_until(runtime.deps.clock.now() + timedelta(days=16))  # silent 14 d, swept 09:30, enrolled 19:30
    with runtime.deps.engine.connect() as conn:
        runs = conn.execute(select(_R.customer_id, _R.status).where(_R.sop_id == "silent_reactivation")).all()
    assert len(runs) == 30
    assert {status for _, status in runs} == {"scheduled"}


def test_private_schedule_enrols_only_its_audience(runtime):
    deps = runtime.deps
    promo = deps.library.sops["promotion_double12"]
    spec = promo.model_copy(update={"triggers": [ScheduleTrigger(on="schedule", cron="0 20 * * *")],
                                    "audience": Audience(tags_any=["VIP"])})
    runtime.replace_sop(spec, deps.library.sources[spec.id])
    _add(runtime, "vip", "plain")
    runtime.tick()
    with deps.engine.begin() as conn:
        change_tags(conn, deps, Effects(), "vip", ["VIP"], [], source="test", at=deps.clock.now())
    runtime.worker.bootstrap()
    runtime.run_until(deps.clock.now() + timedelta(hours=6))  # past 20:00 shop time
    with deps.engine.connect() as conn:
        enrolled = set(conn.execute(select(_R.customer_id).where(_R.sop_id == spec.id)).scalars())
    assert enrolled == {"vip"}


def test_no_statement_of_a_month_walks_a_table_that_grows_with_every_send(runtime):
    """Per-batch statements must find their rows through an index on the batch's keys.

    Only the daily sweep reads the whole customer table (once a day, whatever the traffic); the catalogue
    (product) is read to know which profile questions it makes worth asking, and does not grow with sends.
    """
    statements: dict[str, object] = {}

    def capture(_conn, _cursor, statement, parameters, _context, executemany):
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.setdefault(statement, parameters)

    engine = runtime.deps.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        _add(runtime, "c1", "c2", "c3")
        submit(runtime.deps, key="m1", customer_id="c1", kind="message", payload={"text": "2"},
               at=runtime.deps.clock.now() + timedelta(minutes=5))
        runtime.run_until(MONDAY_15_SHANGHAI + timedelta(days=31))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        plans = {sql: " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
                 for sql, params in statements.items()}
    walking = {sql: plan for sql, plan in plans.items()
               if "ix_soprun_sop_id" in plan or any(part.startswith("SCAN ") and part != "SCAN customer"
                                                     and not part.startswith("SCAN product")
                                                     for part in plan.split(" | "))}
    assert len(plans) > 20
    assert walking == {}


def test_push_of_a_run_exited_earlier_in_the_same_batch_is_not_sent(runtime):
    deps = runtime.deps
    marker = deps.library.sops["silent_reactivation"]  # first step tags 沉默唤醒中, then sends care
    watcher = marker.model_copy(update={
        "id": "exits_on_marker", "family": "test", "reenrol_after_days": None,
        "exit": Exit(when=[ExitCondition(tag="沉默唤醒中")]),
        "steps": [s for s in marker.steps if s.id in ("care", "done")]})
    runtime.replace_sop(watcher, deps.library.sources[marker.id])
    _add(runtime, "c1")
    runtime.tick()
    now = deps.clock.now()
    with deps.engine.begin() as conn:
        conn.execute(update(Customer.__table__).values(stage="silent"))
        effects = Effects()
        schedule_enrolment(effects, marker, "c1", trigger_key="t", due_at=now, reason="test")
        schedule_enrolment(effects, watcher, "c1", trigger_key="t", due_at=now, reason="test")
        effects.flush(conn)
    runtime.tick()
    runtime.run_until(now + timedelta(days=2))  # past the daily cap that would defer a second push
    with deps.engine.connect() as conn:
        watcher_run = conn.execute(select(_R.status, _R.exit_reason).where(_R.sop_id == watcher.id)).one()
        queued = conn.execute(select(Outbox.__table__.c.key).where(Outbox.__table__.c.sop_id == watcher.id)).all()
    sent = [r["key"] for r in deps.channel.records("c1")]
    assert tuple(watcher_run) == ("exited", "tag 沉默唤醒中")
    assert queued == []
    assert [key for key in sent if key.startswith(f"{marker.id}/c1/t/care")]


def test_a_question_put_off_by_quiet_hours_gets_its_whole_time_to_be_answered(tmp_path: Path):
    from datetime import UTC, datetime

    from sop_graphs.loader import load_sop_text

    night = datetime(2026, 11, 23, 18, 20, tzinfo=UTC)  # 02:20 in Shanghai: quiet hours until 08:00
    runtime = Runtime.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0),
                            clock=SimClock(night))
    text = (Path("sop_graphs/library/sops") / f"{NURTURE}.yaml").read_text(encoding="utf-8")
    text = text.replace("    slot: skin_type\n", "    slot: skin_type\n    marketing: true\n", 1)  # a marketing question
    spec, source, problems = load_sop_text(text, f"{NURTURE}.yaml", NURTURE)
    assert spec is not None and not problems
    runtime.replace_sop(spec, source)
    _add(runtime, "c1")
    runtime.run_until(night + timedelta(hours=6))  # 08:20: the question went out at 08:00
    asked = [r for r in runtime.deps.channel.records("c1") if r["action"] == "ask"]
    assert asked, "the first question is sent when quiet hours end"
    t = TimelineEntry.__table__.c
    with runtime.deps.engine.connect() as conn:
        kinds = list(conn.execute(select(t.kind).where(t.customer_id == "c1")).scalars())
        due = conn.execute(select(_D.due_at).where(_D.step_id == "q_skin", _D.kind == "resume",
                                                   _D.status == "pending")).scalars().all()
    assert "deferred" in kinds and "ask_timeout" not in kinds
    assert due and as_utc(min(due)) == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 08:00 + the 3 h timeout


def test_a_live_complaint_run_holds_back_only_its_own_customers_marketing(runtime):
    _add(runtime, "c1", "c2")
    runtime.run_until(runtime.deps.clock.now() + timedelta(minutes=10))  # welcome and first question out
    complaint = runtime.deps.library.sops["complaint_handling"]
    with runtime.deps.engine.begin() as conn:
        conn.execute(SopRun.__table__.insert().values(
            id="complaint_handling/c1/t", sop_id=complaint.id, sop_version=1, family=complaint.id, customer_id="c1",
            status="active", trigger="test", started_at=as_utc(runtime.deps.clock.now())))
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=4))  # the question times out: invite, coupon due
    o = Outbox.__table__.c
    with runtime.deps.engine.connect() as conn:
        held = dict(conn.execute(select(o.customer_id, o.last_deferral).where(o.step_id == "invite")).all())
    sent = {r["customer_id"] for r in runtime.deps.channel.records() if "/invite/" in r["key"]}
    assert sent == {"c2"}
    assert f"open {complaint.name}: marketing paused" in held["c1"]
