"""Every SOP of the bundled library runs on the simulated clock and delivers its content."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from agent.inbound import submit
from sop_graphs.customers import BROADCAST
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags, schedule_enrolment
from sop_graphs.loader import load_library
from sop_graphs.tables import SopRun
from tests.sop_graphs.test_validator import LIBRARY

SOP_IDS = sorted(load_library([LIBRARY], LIBRARY)[0].sops)


@pytest.mark.parametrize("sop_id", SOP_IDS)
def test_sop_runs_to_an_end_and_sends(runtime, sop_id):
    deps = runtime.deps
    spec = deps.library.sops[sop_id]
    now = deps.clock.now()
    submit(deps, key="add", customer_id="c1", kind="customer_added", payload={"name": "测试"}, at=now)
    runtime.tick()
    subject = BROADCAST if spec.defaults.touchpoint in ("group", "moments") else "c1"
    with deps.engine.begin() as conn:
        effects = Effects()
        tags = [*spec.audience.tags_all, *spec.audience.tags_any[:1]]
        change_tags(conn, deps, effects, "c1", tags, [], source="test", at=now)
        if spec.audience.stages:
            from sqlalchemy import update

            from knowledge.tables import Customer
            conn.execute(update(Customer.__table__).values(stage=spec.audience.stages[0]))
        schedule_enrolment(effects, spec, subject, trigger_key="test", due_at=now, reason="test")
        effects.flush(conn)
    for text in ("2", "补水", "300", "XH001", "破损了", "满意"):
        runtime.run_until(deps.clock.now() + timedelta(hours=1))
        submit(deps, key=f"m-{text}", customer_id="c1", kind="message", payload={"text": text}, at=deps.clock.now())
    runtime.run_until(deps.clock.now() + timedelta(days=40))
    with deps.engine.connect() as conn:
        run_id, status = conn.execute(select(SopRun.__table__.c.id, SopRun.__table__.c.status).where(
            SopRun.__table__.c.sop_id == sop_id, SopRun.__table__.c.customer_id == subject)).first()
    assert status in ("completed", "exited")
    sent = [r for r in deps.channel.records(subject) if r["key"].startswith(f"{run_id}/")]
    assert sent, "the SOP delivered nothing"
    assert all(r["attempts"] == 1 for r in sent)
