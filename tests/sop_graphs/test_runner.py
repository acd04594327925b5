"""Graph SOP runs start without LangGraph (GraphRunner.start_many) and get their thread the first time they are
resumed: what the customer receives is what a graph-started run sends, and a run never resumed never has one."""

from datetime import timedelta

from sqlalchemy import func, select

from agent.inbound import submit
from agent.runtime import Runtime
from sop_graphs.tables import PendingThread, SopRun

NURTURE = "new_customer_nurture"


def _add(runtime: Runtime, cid: str) -> None:
    submit(runtime.deps, key=f"add-{cid}", customer_id=cid, kind="customer_added", payload={"name": "小林"},
           at=runtime.deps.clock.now())


def _say(runtime: Runtime, cid: str, text: str, n: int) -> None:
    submit(runtime.deps, key=f"say-{cid}-{n}", customer_id=cid, kind="message", payload={"text": text},
           at=runtime.deps.clock.now())


def _run_of(runtime: Runtime, cid: str) -> str:
    with runtime.deps.engine.connect() as conn:
        return conn.execute(select(SopRun.id).where(SopRun.customer_id == cid, SopRun.sop_id == NURTURE)).scalar_one()


def _thread(runtime: Runtime, run_id: str) -> dict:
    return runtime.runner.graphs[NURTURE].get_state({"configurable": {"thread_id": run_id}}).values


def _pending(runtime: Runtime) -> int:
    with runtime.deps.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(PendingThread)).scalar_one()


def test_an_enrolment_sends_the_first_question_without_writing_a_graph_thread(runtime):
    _add(runtime, "c1")
    runtime.run_until(runtime.deps.clock.now() + timedelta(minutes=5))
    assert [r["action"] for r in runtime.deps.channel.records("c1")] == ["message", "ask"]
    assert _thread(runtime, _run_of(runtime, "c1")) == {}
    assert _pending(runtime) == 1


def test_the_first_answer_writes_the_thread_and_the_run_goes_on_from_the_question(runtime):
    _add(runtime, "c1")
    runtime.run_until(runtime.deps.clock.now() + timedelta(minutes=5))
    _say(runtime, "c1", "1", 1)
    runtime.run_until(runtime.deps.clock.now() + timedelta(minutes=5))
    run_id = _run_of(runtime, "c1")
    state = _thread(runtime, run_id)
    assert state["run_id"] == run_id and state["answers"], "the answer was taken by the thread"
    assert _pending(runtime) == 0
    asks = [r for r in runtime.deps.channel.records("c1") if r["action"] == "ask"]
    assert len(asks) == 2 and asks[0]["key"] != asks[1]["key"], "the next question, asked once"


def test_a_thread_written_before_a_crash_is_not_written_again(runtime):
    _add(runtime, "c1")
    runtime.run_until(runtime.deps.clock.now() + timedelta(minutes=5))
    run_id = _run_of(runtime, "c1")
    with runtime.deps.engine.connect() as conn:
        row = dict(conn.execute(select(PendingThread.__table__).where(PendingThread.run_id == run_id)).mappings().one())
    assert runtime.runner._materialise(NURTURE, run_id)  # noqa: SLF001
    with runtime.deps.engine.begin() as conn:  # as if the process died between writing the thread and the delete
        conn.execute(PendingThread.__table__.insert().values(**row))
    _say(runtime, "c1", "1", 1)
    runtime.run_until(runtime.deps.clock.now() + timedelta(minutes=5))
    assert [r["action"] for r in runtime.deps.channel.records("c1")].count("ask") == 2
    assert _pending(runtime) == 0


def test_a_run_that_ends_without_ever_being_resumed_leaves_nothing_behind(runtime):
    _add(runtime, "c1")
    runtime.run_until(runtime.deps.clock.now() + timedelta(days=40))
    with runtime.deps.engine.connect() as conn:
        status = conn.execute(select(SopRun.status).where(SopRun.id == _run_of(runtime, "c1"))).scalar_one()
    assert status == "completed"
    assert _thread(runtime, _run_of(runtime, "c1")) == {}
    assert _pending(runtime) == 0
