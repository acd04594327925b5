"""Node functions, one factory per step kind. Nodes return partial state updates and set ``route``.

Side effects go to SQL with deterministic keys (run/step/visit), so a node re-executed by LangGraph
after an interrupt, or replayed after a crash, writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from sqlalchemy import update
from sqlalchemy.engine import Connection

from knowledge.clock import as_utc
from knowledge.tables import Customer
from sop_graphs.actions import end_without_step, perform
from sop_graphs.answers import parse_answer
from sop_graphs.customers import BROADCAST, load_customer, tags_of
from sop_graphs.deps import Deps, RunContext
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags
from sop_graphs.expr import parse_condition
from sop_graphs.spec import AskStep, BranchStep, ChatStep, SopSpec, WaitStep, parse_duration
from sop_graphs.state import RunState, bump
from sop_graphs.tables import DueTouchpoint, SopRun
from sop_graphs.timing import plan_segment, wait_until

Node = Callable[[RunState, Runtime[RunContext]], dict[str, Any]]
_R = SopRun.__table__.c


def _mark(conn: Connection, run_id: str, **values: Any) -> None:
    conn.execute(update(SopRun.__table__).where(_R.id == run_id).values(**values))


def _subject(conn: Connection, customer_id: str) -> tuple[dict[str, Any] | None, set[str]]:
    if customer_id == BROADCAST:
        return None, set()
    return load_customer(conn, customer_id), tags_of(conn, customer_id)


def _finish_or_follow(conn: Connection, deps: Deps, effects: Effects, run_id: str, follow: str | None,
                      at: datetime) -> str:
    if follow is None:
        end_without_step(conn, deps, effects, run_id, at)
        return END
    return follow


def make_node(spec: SopSpec, index: int) -> Node:
    """The node function of step ``index`` of ``spec``."""
    step = spec.steps[index]
    follow = spec.successor(index)
    if isinstance(step, AskStep):
        return _ask_node(spec, step, follow)
    if isinstance(step, WaitStep):
        return _wait_node(spec, step, follow) if step.timed else _event_wait_node(spec, step, follow)
    if isinstance(step, BranchStep):
        return _branch_node(spec, step)
    if isinstance(step, ChatStep):
        return _chat_node(spec, step, follow)
    return _action_node(spec, step, follow)


def _action_node(spec: SopSpec, step: Any, follow: str | None) -> Node:
    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps, origin = runtime.context.deps, runtime.context.origin
        visit, visits = bump(state, step.id)
        now = deps.clock.now()
        run_id, customer_id = state["run_id"], state["customer_id"]
        effects = Effects()
        with deps.engine.begin() as conn:
            customer, tags = _subject(conn, customer_id)
            perform(conn, deps, effects, spec=spec, step=step, run_id=run_id, customer=customer,
                    customer_id=customer_id, tags=tags, occurrence=str(visit), at=now, origin=origin)
            route = END if step.kind == "end" else _finish_or_follow(conn, deps, effects, run_id, follow, now)
            if route != END:
                _mark(conn, run_id, current_step=step.id)
            effects.flush(conn)
        return {"visits": visits, "route": route}

    node.__name__ = f"{step.kind}_{step.id}"
    return node


def _ask_node(spec: SopSpec, step: AskStep, follow: str | None) -> Node:
    timeout = parse_duration(step.timeout)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps, origin = runtime.context.deps, runtime.context.origin
        visit, visits = bump(state, step.id)
        attempts = dict(state.get("attempts") or {})
        run_id, customer_id = state["run_id"], state["customer_id"]
        token = f"ask:{step.id}:{visit}"
        timeout_key = f"{run_id}/{step.id}/{visit}/timeout"
        now = deps.clock.now()
        effects = Effects()
        with deps.engine.begin() as conn:
            customer, tags = _subject(conn, customer_id)
            prefix = f"{step.reask}\n" if attempts.get(step.id) and step.reask else ""
            perform(conn, deps, effects, spec=spec, step=step, run_id=run_id, customer=customer,
                    customer_id=customer_id, tags=tags, occurrence=str(visit), at=now, origin=origin, prefix=prefix)
            effects.schedule(key=timeout_key, kind="resume", due_at=now + timeout, run_id=run_id,
                             customer_id=customer_id, sop_id=spec.id, step_id=step.id,
                             payload={"token": token, "kind": "timeout"})
            _mark(conn, run_id, current_step=step.id, waiting=token, waiting_kind="ask")
            effects.flush(conn)

        reply: dict[str, Any] = interrupt({"token": token, "kind": "ask", "step": step.id})

        answers = dict(state.get("answers") or {})
        now = deps.clock.now()
        with deps.engine.begin() as conn:
            _mark(conn, run_id, waiting=None, waiting_kind=None)
            if reply.get("kind") != "timeout":
                # only an answer retires the timer; a timeout resume is that very row, which the worker
                # marks done after the graph has persisted (cancelling it here could strand the run)
                conn.execute(update(DueTouchpoint.__table__).where(
                    DueTouchpoint.__table__.c.key == timeout_key, DueTouchpoint.__table__.c.status == "pending",
                ).values(status="cancelled", done_at=as_utc(now)))
            if reply.get("kind") == "timeout":
                effects.note(customer_id=customer_id, at=now, kind="ask_timeout", run_id=run_id,
                             key=f"{run_id}/{step.id}/{visit}/timed-out",
                             summary=f"问题「{step.slot}」{step.timeout} 内未回复，继续后续步骤")
                route = step.on_timeout or follow
            else:
                parsed = parse_answer(step.answer, str(reply.get("text", "")), deps.shop.local_date(now))
                if parsed.ok:
                    answers[step.slot] = parsed.value
                    _store_profile(conn, customer_id, step.slot, parsed.value)
                    effects.note(customer_id=customer_id, at=now, kind="answer", run_id=run_id,
                                 key=f"{run_id}/{step.id}/{visit}/answer",
                                 summary=f"回答「{step.slot}」= {parsed.value}", detail={"slot": step.slot})
                    change_tags(conn, deps, effects, customer_id, parsed.tags, [],
                                source=f"{run_id}/{step.id}/{visit}", at=now, run_id=run_id)
                    route = follow
                elif parsed.skipped and step.skippable:
                    effects.note(customer_id=customer_id, at=now, kind="answer", run_id=run_id,
                                 key=f"{run_id}/{step.id}/{visit}/skip", summary=f"跳过问题「{step.slot}」")
                    route = follow
                else:
                    attempts[step.id] = attempts.get(step.id, 0) + 1
                    effects.note(customer_id=customer_id, at=now, kind="answer_invalid", run_id=run_id,
                                 key=f"{run_id}/{step.id}/{visit}/invalid",
                                 summary=f"答案无效（{parsed.reason or '跳过不被允许'}）：{reply.get('text', '')!r}")
                    route = step.id if attempts[step.id] < step.max_attempts else (step.on_invalid or follow)
            if route is None:
                route = _finish_or_follow(conn, deps, effects, run_id, None, now)
            effects.flush(conn)
        return {"visits": visits, "answers": answers, "attempts": attempts, "route": route}

    node.__name__ = f"ask_{step.id}"
    return node


def _store_profile(conn: Connection, customer_id: str, slot: str, value: Any) -> None:
    table = Customer.__table__
    attributes = conn.execute(table.select().with_only_columns(table.c.attributes)
                              .where(table.c.id == customer_id)).scalar()
    if attributes is None:
        return
    conn.execute(update(table).where(table.c.id == customer_id).values(attributes={**attributes, slot: value}))


def _wait_node(spec: SopSpec, step: WaitStep, follow: str | None) -> Node:
    segment = plan_segment(spec, step.id)
    steps = spec.steps_by_id

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps = runtime.context.deps
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        occurrence = f"{step.id}.{visit}"
        token = f"seg:{step.id}:{visit}"
        now = deps.clock.now()
        effects = Effects()
        with deps.engine.begin() as conn:
            customer, _ = _subject(conn, customer_id)
            added_at = as_utc(customer["added_at"]) if customer else now
            cursor = wait_until(step, now, added_at, deps.shop)
            for step_id in segment.steps:
                current = steps[step_id]
                if isinstance(current, WaitStep):
                    cursor = wait_until(current, cursor, added_at, deps.shop)
                    continue
                effects.schedule(key=f"{run_id}/{step_id}/{occurrence}", kind="end" if current.kind == "end" else "push",
                                 due_at=cursor, run_id=run_id, customer_id=customer_id, sop_id=spec.id,
                                 step_id=step_id, payload={"occurrence": occurrence})
            if segment.resume_at is None:
                if not segment.steps or steps[segment.steps[-1]].kind != "end":
                    effects.schedule(key=f"{run_id}/__end__/{occurrence}", kind="end", due_at=cursor, run_id=run_id,
                                     customer_id=customer_id, sop_id=spec.id, payload={"occurrence": occurrence})
                _mark(conn, run_id, status="scheduled", current_step=step.id, waiting=None, waiting_kind=None)
            else:
                effects.schedule(key=f"{run_id}/{step.id}/{visit}/resume", kind="resume", due_at=cursor,
                                 run_id=run_id, customer_id=customer_id, sop_id=spec.id, step_id=step.id,
                                 payload={"token": token, "kind": "segment"})
                _mark(conn, run_id, current_step=step.id, waiting=token, waiting_kind="segment")
            effects.flush(conn)
        if segment.resume_at is None:
            return {"visits": visits, "route": END}
        interrupt({"token": token, "kind": "segment", "step": step.id})
        return {"visits": visits, "route": segment.resume_at}

    node.__name__ = f"wait_{step.id}"
    return node


def _event_wait_node(spec: SopSpec, step: WaitStep, follow: str | None) -> Node:
    timeout = parse_duration(step.timeout or "1d")

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps = runtime.context.deps
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        token = f"event:{step.id}:{visit}"
        now = deps.clock.now()
        with deps.engine.begin() as conn:
            effects = Effects()
            effects.schedule(key=f"{run_id}/{step.id}/{visit}/timeout", kind="resume", due_at=now + timeout,
                             run_id=run_id, customer_id=customer_id, sop_id=spec.id, step_id=step.id,
                             payload={"token": token, "kind": "timeout"})
            _mark(conn, run_id, current_step=step.id, waiting=token, waiting_kind=f"event:{step.until_event}")
            effects.flush(conn)
        reply: dict[str, Any] = interrupt({"token": token, "kind": "event", "event": step.until_event})
        with deps.engine.begin() as conn:
            _mark(conn, run_id, waiting=None, waiting_kind=None)
            route = follow if reply.get("kind") == "event" else (step.on_timeout or follow)
            effects = Effects()
            if route is None:
                route = _finish_or_follow(conn, deps, effects, run_id, None, deps.clock.now())
            effects.flush(conn)
        return {"visits": visits, "route": route}

    node.__name__ = f"wait_{step.id}"
    return node


def _branch_node(spec: SopSpec, step: BranchStep) -> Node:
    cases = [(parse_condition(case.when), case.goto) for case in step.cases]

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps = runtime.context.deps
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        now = deps.clock.now()
        with deps.engine.begin() as conn:
            customer, tags = _subject(conn, customer_id)
            customer = customer or {}
            added = customer.get("added_at")
            env = {"tags": tags, "stage": customer.get("stage"), "answers": state.get("answers") or {},
                   "profile": customer.get("attributes") or {}, "orders": customer.get("orders_count") or 0,
                   "days_since_added": (now - as_utc(added)).days if added else 0}
            route, why = step.default, "否则"
            for condition, target in cases:
                if condition.evaluate(env):
                    route, why = target, condition.source
                    break
            effects = Effects()
            effects.note(customer_id=customer_id, at=now, kind="branch", run_id=run_id,
                         key=f"{run_id}/{step.id}/{visit}", summary=f"分支 {step.label or step.id}：{why} → {route}")
            _mark(conn, run_id, current_step=step.id)
            effects.flush(conn)
        return {"visits": visits, "route": route}

    node.__name__ = f"branch_{step.id}"
    return node


def _chat_node(spec: SopSpec, step: ChatStep, follow: str | None) -> Node:
    timeout = parse_duration(step.timeout)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps = runtime.context.deps
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        token = f"chat:{step.id}:{visit}"
        now = deps.clock.now()
        with deps.engine.begin() as conn:
            effects = Effects()
            if step.opening:
                effects.send(key=f"{run_id}/{step.id}/{visit}", action="message", customer_id=customer_id, at=now,
                             payload={"text": step.opening}, run_id=run_id, sop_id=spec.id, step_id=step.id)
            effects.schedule(key=f"{run_id}/{step.id}/{visit}/timeout", kind="resume", due_at=now + timeout,
                             run_id=run_id, customer_id=customer_id, sop_id=spec.id, step_id=step.id,
                             payload={"token": token, "kind": "timeout"})
            _mark(conn, run_id, current_step=step.id, waiting=token, waiting_kind="chat")
            effects.flush(conn)
        interrupt({"token": token, "kind": "chat", "until": step.until_intents})
        with deps.engine.begin() as conn:
            _mark(conn, run_id, waiting=None, waiting_kind=None)
            effects = Effects()
            route = _finish_or_follow(conn, deps, effects, run_id, follow, deps.clock.now())
            effects.flush(conn)
        return {"visits": visits, "route": route}

    node.__name__ = f"chat_{step.id}"
    return node
