"""Node functions, one factory per step kind. Nodes return partial state updates and set ``route``.

Side effects go to SQL with deterministic keys (run/step/visit), so a node re-executed by LangGraph
after an interrupt, or replayed after a crash, writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from knowledge.clock import as_utc
from sop_graphs.actions import end_without_step, perform
from sop_graphs.answers import parse_answer, typed_answer
from sop_graphs.customers import BROADCAST, load_customer, tags_of
from sop_graphs.deps import Deps, RunContext
from sop_graphs.effects import Effects, mark_run
from sop_graphs.enrolment import change_tags
from sop_graphs.expr import parse_condition
from sop_graphs.facts import current_fact, questions_declined, record_answer
from sop_graphs.relevance import unused_slots
from sop_graphs.spec import AskStep, BranchStep, ChatStep, SopSpec, WaitStep, parse_duration
from sop_graphs.state import RunState, bump
from sop_graphs.tables import DueTouchpoint, SopRun
from sop_graphs.timing import Segment, plan_segment, plan_tail, wait_until

Node = Callable[[RunState, Runtime[RunContext]], dict[str, Any]]
_R = SopRun.__table__.c


def _subject(conn: Connection, customer_id: str, *, with_tags: bool = True,
             ) -> tuple[dict[str, Any] | None, set[str]]:
    if customer_id == BROADCAST:
        return None, set()
    return load_customer(conn, customer_id), tags_of(conn, customer_id) if with_tags else set()


def _arm_pause(conn: Connection, effects: Effects, spec: SopSpec, step_id: str, *, run_id: str, customer_id: str,
               visit: int, token: str, waiting_kind: str, timeout_at: datetime, now: datetime) -> None:
    """Schedule the timeout that ends a pause and mark the run as waiting on ``token``."""
    effects.schedule(key=f"{run_id}/{step_id}/{visit}/timeout", kind="resume", due_at=timeout_at, run_id=run_id,
                     customer_id=customer_id, sop_id=spec.id, step_id=step_id,
                     payload={"token": token, "kind": "timeout"})
    mark_run(conn, run_id, current_step=step_id, waiting=token, waiting_kind=waiting_kind, waiting_since=now)


def _finish_or_follow(conn: Connection, deps: Deps, effects: Effects, run_id: str, follow: str | None,
                      at: datetime) -> str:
    if follow is None:
        end_without_step(conn, deps, effects, run_id, at)
        return END
    return follow


def tails_of(spec: SopSpec) -> dict[str, Segment]:
    """Steps from which the rest of the run is pure: reaching one hands the run to the due table."""
    return {step.id: tail for step in spec.steps if (tail := plan_tail(spec, step.id)) is not None}


def _onward(conn: Connection, deps: Deps, effects: Effects, spec: SopSpec, tails: dict[str, Segment], route: str,
            *, run_id: str, customer_id: str, occurrence: str, now: datetime, origin: str,
            customer: dict[str, Any] | None = None) -> str:
    """``route``, or END after scheduling the pure tail that starts at ``route`` as due rows from ``now``.

    Same actions, keys and timing as running those steps as nodes, at a fraction of the cost: the
    worker performs them in batches (``occurrence`` makes their keys deterministic under replay).
    """
    tail = tails.get(route)
    if tail is None:
        return route
    if customer is None and customer_id != BROADCAST:
        customer = load_customer(conn, customer_id)
    added_at = as_utc(customer["added_at"]) if customer else now
    schedule_segment(effects, deps, spec, tail, run_id=run_id, customer_id=customer_id, occurrence=occurrence,
                     start=now, added_at=added_at, origin=origin)
    mark_run(conn, run_id, status="scheduled", current_step=route, waiting=None, waiting_kind=None)
    return END


def timeout_route(step: Any, follow: str | None) -> str | None:
    """Where a pausing step (ask, event wait, chat) goes on when its timeout fires; None ends the run."""
    return getattr(step, "on_timeout", None) or follow


def leave_on_timeout(conn: Connection, deps: Deps, effects: Effects, spec: SopSpec, tails: dict[str, Segment],
                     step: Any, follow: str | None, *, run_id: str, customer_id: str, visit: int, now: datetime,
                     origin: str, customer: dict[str, Any] | None = None) -> str:
    """A pause ends without the customer: stop waiting, note an unanswered question, go on.

    The one implementation of this transition: the graph's await nodes call it on a timeout resume,
    and the worker calls it for timeouts whose way on is a pure tail, in batches and without the
    graph (the run row, not the thread's checkpoint, says what a run awaits). Returns the next node,
    or END when the run was handed to the due table or ended.
    """
    mark_run(conn, run_id, waiting=None, waiting_kind=None)
    if isinstance(step, AskStep):
        effects.note(customer_id=customer_id, at=now, kind="ask_timeout", run_id=run_id,
                     key=f"{run_id}/{step.id}/{visit}/timed-out",
                     summary=f"问题「{step.slot}」{step.timeout} 内未回复，继续后续步骤")
    route = _finish_or_follow(conn, deps, effects, run_id, timeout_route(step, follow), now)
    if route == END:
        return END
    return _onward(conn, deps, effects, spec, tails, route, run_id=run_id, customer_id=customer_id,
                   occurrence=f"{step.id}.{visit}", now=now, origin=origin, customer=customer)


def pure_timeouts(spec: SopSpec, tails: dict[str, Segment]) -> dict[str, tuple[Any, str | None]]:
    """Pausing steps whose timeout leads to a pure tail (one of ``tails``, from :func:`tails_of`) or the
    end: (step, follow) by step id."""
    found: dict[str, tuple[Any, str | None]] = {}
    for index, step in enumerate(spec.steps):
        follow = spec.successor(index)
        pausing = isinstance(step, AskStep | ChatStep) or (isinstance(step, WaitStep) and not step.timed)
        if pausing and ((route := timeout_route(step, follow)) is None or route in tails):
            found[step.id] = (step, follow)
    return found


AWAIT = "__await"
PREFILL_WINDOW = timedelta(minutes=10)  # suffix of the node that holds a pausing step's interrupt


def make_nodes(spec: SopSpec, index: int) -> list[tuple[str, Node]]:
    """The node functions of step ``index``: one node, or for a pausing step a send/plan node plus an
    await node that holds only the interrupt, so a resume re-executes nothing but the interrupt."""
    step = spec.steps[index]
    follow = spec.successor(index)
    if isinstance(step, AskStep):
        return [(step.id, _ask_send(spec, step, follow)), (step.id + AWAIT, _ask_await(spec, step, follow))]
    if isinstance(step, WaitStep) and step.timed:
        return [(step.id, _wait_plan(spec, step)), (step.id + AWAIT, _wait_await(spec, step))]
    if isinstance(step, WaitStep):
        return [(step.id, _event_wait_arm(spec, step)), (step.id + AWAIT, _event_wait_await(spec, step, follow))]
    if isinstance(step, ChatStep):
        return [(step.id, _chat_open(spec, step)), (step.id + AWAIT, _chat_await(spec, step, follow))]
    if isinstance(step, BranchStep):
        return [(step.id, _branch_node(spec, step))]
    return [(step.id, _action_node(spec, step, follow))]


def _action_node(spec: SopSpec, step: Any, follow: str | None) -> Node:
    tails = tails_of(spec)

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
            route = _onward(conn, deps, effects, spec, tails, route, run_id=run_id, customer_id=customer_id,
                            occurrence=f"{step.id}.{visit}", now=now, origin=origin, customer=customer)
            effects.flush(conn)
        return {"visits": visits, "route": route}

    node.__name__ = f"{step.kind}_{step.id}"
    return node


def _ask_send(spec: SopSpec, step: AskStep, follow: str | None) -> Node:
    timeout = parse_duration(step.timeout)
    tails = tails_of(spec)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps, origin = runtime.context.deps, runtime.context.origin
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        now = deps.clock.now()
        effects = Effects()
        answers = dict(state.get("answers") or {})
        with deps.engine.begin() as conn:
            known = None if state.get("attempts", {}).get(step.id) else known_answer(conn, deps, step, run_id,
                                                                                       customer_id)
            stopped = state.get("stopped") or questions_declined(load_customer(conn, customer_id), now)
            irrelevant = step.slot in unused_slots(conn, deps.library.catalog.profile)
            if known is not None or stopped or irrelevant:
                # already answered (several answers in one message, or stated in chat) or asked to stop asking
                if known is not None:
                    answers[step.slot] = known
                    record_answer(conn, effects, customer_id, step.slot, known, source=f"{run_id}/{step.id}",
                                  method="answer", confidence=0.9, at=now)
                effects.note(customer_id=customer_id, at=now, kind="answer", run_id=run_id,
                             key=f"{run_id}/{step.id}/{visit}/known",
                             summary=f"问题「{step.slot}」" + (f"已知答案 {known}，不再重复提问" if known is not None
                                                             else "：客户不想继续回答，不再提问" if stopped
                                                             else "：本店商品不涉及，不提问"))
                route = _finish_or_follow(conn, deps, effects, run_id, follow, now)
                if route != END:
                    route = _onward(conn, deps, effects, spec, tails, route, run_id=run_id, customer_id=customer_id,
                                    occurrence=f"{step.id}.{visit}", now=now, origin=origin)
                effects.flush(conn)
                return {"visits": visits, "answers": answers, "route": route}
            customer, tags = _subject(conn, customer_id)
            prefix = f"{step.reask}\n" if (state.get("attempts") or {}).get(step.id) and step.reask else ""
            perform(conn, deps, effects, spec=spec, step=step, run_id=run_id, customer=customer,
                    customer_id=customer_id, tags=tags, occurrence=str(visit), at=now, origin=origin, prefix=prefix)
            _arm_pause(conn, effects, spec, step.id, run_id=run_id, customer_id=customer_id, visit=visit,
                       token=f"ask:{step.id}:{visit}", waiting_kind="ask", timeout_at=now + timeout, now=now)
            effects.flush(conn)
        return {"visits": visits, "route": step.id + AWAIT}

    node.__name__ = f"ask_{step.id}"
    return node


def known_answer(conn: Connection, deps: Deps, step: AskStep, run_id: str, customer_id: str) -> Any:
    """The slot's answer if the customer already gave it: a profile fact of the shop's vocabulary at any
    time, any other slot since this run started. Typed like a parsed answer (numbers as numbers)."""
    fact = current_fact(conn, customer_id, step.slot)
    if fact is None:
        return None
    value, at = fact
    if step.slot not in deps.library.catalog.profile.facts:
        started = conn.execute(select(_R.started_at).where(_R.id == run_id)).scalar()
        # the message that started the run may have answered it (prefill), minutes before the run began
        if started is None or at < as_utc(started) - PREFILL_WINDOW:
            return None
    return typed_answer(step.answer, value)


def _ask_await(spec: SopSpec, step: AskStep, follow: str | None) -> Node:
    tails = tails_of(spec)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        visit = (state.get("visits") or {}).get(step.id, 1)
        token = f"ask:{step.id}:{visit}"
        reply: dict[str, Any] = interrupt({"token": token, "kind": "ask", "step": step.id})

        deps = runtime.context.deps
        run_id, customer_id = state["run_id"], state["customer_id"]
        attempts = dict(state.get("attempts") or {})
        answers = dict(state.get("answers") or {})
        now = deps.clock.now()
        effects = Effects()
        with deps.engine.begin() as conn:
            if reply.get("kind") == "timeout":
                # the timeout row itself is marked done by the worker after the graph has persisted
                route = leave_on_timeout(conn, deps, effects, spec, tails, step, follow, run_id=run_id,
                                         customer_id=customer_id, visit=visit, now=now,
                                         origin=runtime.context.origin)
                effects.flush(conn)
                return {"answers": answers, "attempts": attempts, "route": route}
            stopped = reply.get("kind") == "stop"
            mark_run(conn, run_id, waiting=None, waiting_kind=None)
            # an answer retires the timer
            conn.execute(update(DueTouchpoint.__table__).where(
                DueTouchpoint.__table__.c.key == f"{run_id}/{step.id}/{visit}/timeout",
                DueTouchpoint.__table__.c.status == "pending",
            ).values(status="cancelled", done_at=as_utc(now)))
            parsed = parse_answer(step.answer, str(reply.get("text", "")), deps.shop.local_date(now),
                                  deps.library.catalog.profile.facts.get(step.slot))
            if stopped:
                effects.note(customer_id=customer_id, at=now, kind="answer", run_id=run_id,
                             key=f"{run_id}/{step.id}/{visit}/stop", summary="客户不想继续回答问卷，后续问题不再提问")
                route = follow
            elif parsed.ok:
                answers[step.slot] = parsed.value
                record_answer(conn, effects, customer_id, step.slot, parsed.value, source=f"{run_id}/{step.id}",
                              method="answer", confidence=1.0, at=now)
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
            route = _onward(conn, deps, effects, spec, tails, route, run_id=run_id, customer_id=customer_id,
                            occurrence=f"{step.id}.{visit}", now=now, origin=runtime.context.origin)
            effects.flush(conn)
        return {"answers": answers, "attempts": attempts, "route": route, "stopped": stopped or state.get("stopped")}

    node.__name__ = f"await_{step.id}"
    return node


def _wait_plan(spec: SopSpec, step: WaitStep) -> Node:
    segment = plan_segment(spec, step.id)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps = runtime.context.deps
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        occurrence = f"{step.id}.{visit}"
        now = deps.clock.now()
        effects = Effects()
        with deps.engine.begin() as conn:
            customer, _ = _subject(conn, customer_id, with_tags=False)
            added_at = as_utc(customer["added_at"]) if customer else now
            cursor = schedule_segment(effects, deps, spec, segment, run_id=run_id, customer_id=customer_id,
                                      occurrence=occurrence, start=wait_until(step, now, added_at, deps.shop),
                                      added_at=added_at, origin="timer")
            if segment.resume_at is None:
                mark_run(conn, run_id, status="scheduled", current_step=step.id, waiting=None, waiting_kind=None)
            else:
                token = f"seg:{step.id}:{visit}"
                effects.schedule(key=f"{run_id}/{step.id}/{visit}/resume", kind="resume", due_at=cursor,
                                 run_id=run_id, customer_id=customer_id, sop_id=spec.id, step_id=step.id,
                                 payload={"token": token, "kind": "segment"})
                mark_run(conn, run_id, current_step=step.id, waiting=token, waiting_kind="segment")
            effects.flush(conn)
        return {"visits": visits, "route": END if segment.resume_at is None else step.id + AWAIT}

    node.__name__ = f"wait_{step.id}"
    return node


def schedule_segment(effects: Effects, deps: Deps, spec: SopSpec, segment: Segment, *, run_id: str,
                     customer_id: str, occurrence: str, start: datetime, added_at: datetime, origin: str) -> datetime:
    """Write due rows for a pure segment starting at ``start``; returns when its last step is due."""
    steps = spec.steps_by_id
    cursor = start
    for step_id in segment.steps:
        current = steps[step_id]
        if isinstance(current, WaitStep):
            cursor = wait_until(current, cursor, added_at, deps.shop)
            origin = "timer"  # what follows a timed wait answers nobody: it is marketing again
            continue
        effects.schedule(key=f"{run_id}/{step_id}/{occurrence}", kind="end" if current.kind == "end" else "push",
                         due_at=cursor, run_id=run_id, customer_id=customer_id, sop_id=spec.id, step_id=step_id,
                         payload={"occurrence": occurrence, "origin": origin})
    if segment.resume_at is None and (not segment.steps or steps[segment.steps[-1]].kind != "end"):
        effects.schedule(key=f"{run_id}/__end__/{occurrence}", kind="end", due_at=cursor, run_id=run_id,
                         customer_id=customer_id, sop_id=spec.id, payload={"occurrence": occurrence})
    return cursor


def _wait_await(spec: SopSpec, step: WaitStep) -> Node:
    resume_at = plan_segment(spec, step.id).resume_at

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        visit = (state.get("visits") or {}).get(step.id, 1)
        interrupt({"token": f"seg:{step.id}:{visit}", "kind": "segment", "step": step.id})
        return {"route": resume_at or END}

    node.__name__ = f"await_{step.id}"
    return node


def _event_wait_arm(spec: SopSpec, step: WaitStep) -> Node:
    timeout = parse_duration(step.timeout or "1d")

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        deps = runtime.context.deps
        visit, visits = bump(state, step.id)
        run_id, customer_id = state["run_id"], state["customer_id"]
        token = f"event:{step.id}:{visit}"
        now = deps.clock.now()
        with deps.engine.begin() as conn:
            effects = Effects()
            _arm_pause(conn, effects, spec, step.id, run_id=run_id, customer_id=customer_id, visit=visit, token=token,
                       waiting_kind=f"event:{step.until_event}", timeout_at=now + timeout, now=now)
            effects.flush(conn)
        return {"visits": visits}

    node.__name__ = f"wait_{step.id}"
    return node


def _event_wait_await(spec: SopSpec, step: WaitStep, follow: str | None) -> Node:
    tails = tails_of(spec)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        visit = (state.get("visits") or {}).get(step.id, 1)
        reply: dict[str, Any] = interrupt({"token": f"event:{step.id}:{visit}", "kind": "event",
                                           "event": step.until_event})
        deps = runtime.context.deps
        now = deps.clock.now()
        run_id, customer_id, origin = state["run_id"], state["customer_id"], runtime.context.origin
        with deps.engine.begin() as conn:
            effects = Effects()
            if reply.get("kind") == "event":
                mark_run(conn, run_id, waiting=None, waiting_kind=None)
                route = _finish_or_follow(conn, deps, effects, run_id, follow, now)
                route = _onward(conn, deps, effects, spec, tails, route, run_id=run_id, customer_id=customer_id,
                                occurrence=f"{step.id}.{visit}", now=now, origin=origin)
            else:
                route = leave_on_timeout(conn, deps, effects, spec, tails, step, follow, run_id=run_id,
                                         customer_id=customer_id, visit=visit, now=now, origin=origin)
            effects.flush(conn)
        return {"route": route}

    node.__name__ = f"await_{step.id}"
    return node


def _branch_node(spec: SopSpec, step: BranchStep) -> Node:
    cases = [(parse_condition(case.when), case.goto) for case in step.cases]
    tails = tails_of(spec)

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
            mark_run(conn, run_id, current_step=step.id)
            route = _onward(conn, deps, effects, spec, tails, route, run_id=run_id, customer_id=customer_id,
                            occurrence=f"{step.id}.{visit}", now=now, origin=runtime.context.origin,
                            customer=customer or None)
            effects.flush(conn)
        return {"visits": visits, "route": route}

    node.__name__ = f"branch_{step.id}"
    return node


def _chat_open(spec: SopSpec, step: ChatStep) -> Node:
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
            _arm_pause(conn, effects, spec, step.id, run_id=run_id, customer_id=customer_id, visit=visit, token=token,
                       waiting_kind="chat", timeout_at=now + timeout, now=now)
            effects.flush(conn)
        return {"visits": visits}

    node.__name__ = f"chat_{step.id}"
    return node


def _chat_await(spec: SopSpec, step: ChatStep, follow: str | None) -> Node:
    tails = tails_of(spec)

    def node(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        visit = (state.get("visits") or {}).get(step.id, 1)
        interrupt({"token": f"chat:{step.id}:{visit}", "kind": "chat", "until": step.until_intents})
        deps = runtime.context.deps
        now = deps.clock.now()
        with deps.engine.begin() as conn:
            effects = Effects()
            # a chat ends the same way whether it timed out or the customer said goodbye
            route = leave_on_timeout(conn, deps, effects, spec, tails, step, follow, run_id=state["run_id"],
                                     customer_id=state["customer_id"], visit=visit, now=now,
                                     origin=runtime.context.origin)
            effects.flush(conn)
        return {"route": route}

    node.__name__ = f"await_{step.id}"
    return node
