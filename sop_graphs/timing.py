"""When timed waits end, and which pure steps after a wait can be scheduled without the graph."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from knowledge.clock import ShopTime, as_utc, parse_hhmm
from sop_graphs.spec import WEEKDAYS, SopSpec, WaitStep, parse_duration

PURE_KINDS = frozenset({"message", "group_invite", "coupon", "tag", "handoff", "wait"})


def wait_until(step: WaitStep, cursor: datetime, added_at: datetime, shop: ShopTime) -> datetime:
    """End of a timed wait entered at ``cursor``; a time already past means 'now' (never earlier)."""
    cursor = as_utc(cursor)
    at: time | None = parse_hhmm(step.at) if step.at else None
    if step.for_ is not None:
        return cursor + parse_duration(step.for_)
    if step.day is not None:
        hhmm = at or shop.local(added_at).time().replace(second=0, microsecond=0)
        return max(cursor, shop.day_n_at(added_at, step.day, hhmm))
    if step.weekday is not None and at is not None:
        return shop.next_weekday_at(cursor, WEEKDAYS.index(step.weekday), at)
    if at is not None:
        return shop.next_time_of_day(cursor, at)
    raise ValueError(f"wait {step.id} has no timed form")


@dataclass(frozen=True)
class Segment:
    """Steps after a timed wait that run on timers alone, and where the graph must take over again.

    ``resume_at`` is None when the segment runs to the end of the SOP (an ``end`` step or no step).
    """

    steps: tuple[str, ...]
    resume_at: str | None


def plan_segment(spec: SopSpec, wait_id: str) -> Segment:
    """Follow ``next`` from a timed wait through pure steps until a step that needs fresh graph state."""
    index = {s.id: i for i, s in enumerate(spec.steps)}
    return _chain(spec, spec.successor(index[wait_id]), {wait_id})


def plan_whole_run(spec: SopSpec) -> Segment | None:
    """The whole run as one segment when every step on its path is pure (no graph needed), else None."""
    return plan_tail(spec, spec.steps[0].id)


def plan_tail(spec: SopSpec, step_id: str) -> Segment | None:
    """The rest of the run from ``step_id`` as one segment when it is pure up to the end, else None.

    A graph that reaches such a tail hands it to the due table and ends: the tail's steps then run in
    the worker's batches instead of one LangGraph super-step each.
    """
    segment = _chain(spec, step_id, set())
    return segment if segment.resume_at is None else None


def _chain(spec: SopSpec, current: str | None, seen: set[str]) -> Segment:
    index = {s.id: i for i, s in enumerate(spec.steps)}
    chain: list[str] = []
    seen = set(seen)
    while current is not None and current not in seen:
        step = spec.steps[index[current]]
        if step.kind == "end":
            return Segment((*chain, current), None)
        if step.kind not in PURE_KINDS or (isinstance(step, WaitStep) and not step.timed):
            break
        chain.append(current)
        seen.add(current)
        current = spec.successor(index[current])
    return Segment(tuple(chain), current)
