"""Graph state of one SOP run. Small and serialisable: business data lives in SQL tables."""

from __future__ import annotations

from typing import Any, TypedDict


class RunState(TypedDict, total=False):
    run_id: str
    customer_id: str
    visits: dict[str, int]  # step id -> times entered; part of every idempotency key
    answers: dict[str, Any]  # questionnaire slot -> parsed answer
    attempts: dict[str, int]  # ask step id -> invalid answers so far
    route: str  # the step the last node chose; read by the conditional edges
    stopped: bool  # the customer asked not to be asked any more questions in this run


def bump(state: RunState, step_id: str) -> tuple[int, dict[str, int]]:
    """This visit's number for ``step_id`` and the visits map to return."""
    visits = dict(state.get("visits") or {})
    visits[step_id] = visits.get(step_id, 0) + 1
    return visits[step_id], visits
