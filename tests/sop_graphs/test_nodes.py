"""Graph nodes hand a run's pure tail to the due table instead of walking it node by node."""

from datetime import timedelta

from sqlalchemy import select

from agent.inbound import submit
from sop_graphs.effects import Effects
from sop_graphs.nodes import schedule_segment
from sop_graphs.tables import DueTouchpoint, SopRun
from sop_graphs.timing import Segment, plan_tail

_D = DueTouchpoint.__table__.c


def _add_and_wait(runtime, hours: float) -> None:
    submit(runtime.deps, key="add-c1", customer_id="c1", kind="customer_added", payload={"name": "小林"},
           at=runtime.deps.clock.now())
    runtime.run_until(runtime.deps.clock.now() + timedelta(hours=hours))


def test_timed_out_question_schedules_the_rest_of_the_run_as_due_rows(runtime):
    _add_and_wait(runtime, 4)  # q_skin times out after 3 h; invite, coupon and the day-N pushes follow
    with runtime.deps.engine.connect() as conn:
        status = conn.execute(select(SopRun.__table__.c.status)
                              .where(SopRun.__table__.c.sop_id == "new_customer_nurture")).scalar()
        pushed = {r.step_id: r.status for r in conn.execute(select(_D.step_id, _D.status).where(_D.kind == "push"))}
    assert status == "scheduled"
    assert pushed["invite"] == pushed["coupon"] == "done"
    assert pushed["d30_checkin"] == "pending"


def test_tail_performs_the_same_actions_as_the_graph_would(runtime):
    _add_and_wait(runtime, 4)
    actions = [r["action"] for r in runtime.deps.channel.records("c1")]
    assert actions == ["message", "ask", "group_invite", "coupon"]


def test_tail_is_planned_only_when_every_remaining_step_is_pure(runtime):
    spec = runtime.deps.library.sops["new_customer_nurture"]
    assert plan_tail(spec, "invite") is not None
    assert plan_tail(spec, "q_concern") is None  # an ask needs the graph


def test_steps_after_a_timed_wait_in_a_tail_count_as_marketing(runtime):
    spec = runtime.deps.library.sops["new_customer_nurture"]
    effects = Effects()
    now = runtime.deps.clock.now()
    schedule_segment(effects, runtime.deps, spec, Segment(("coupon", "day1", "d1_content"), None), run_id="r1",
                     customer_id="c1", occurrence="t.1", start=now, added_at=now, origin="customer")
    origins = {row["step_id"]: row["payload"].get("origin") for row in effects.due}
    assert origins["coupon"] == "customer"  # answers the customer, as the node would have
    assert origins["d1_content"] == "timer"


def test_owner_title_is_not_doubled_in_the_welcome():
    from sop_graphs.actions import owner_name

    assert owner_name("顾问小禾", "护肤顾问") == "小禾"
    assert owner_name("门店小美", "护肤顾问") == "门店小美" and owner_name("顾问", "护肤顾问") == "顾问"
