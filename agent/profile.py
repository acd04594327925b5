"""Profile facts and tags from a turn, written with provenance (message, rule or model, confidence).

Tags come only from the operator's taxonomy: rule tags by keyword/intent/fact, model tags filtered
against the taxonomy. A fact for a key the customer already has supersedes it; history is kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from agent.understanding import Fact, Understanding
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags
from sop_graphs.facts import current_facts, write_fact

__all__ = ["apply_turn", "budget_band", "current_facts", "write_facts"]


def budget_band(value: str) -> str | None:
    try:
        amount = float(value)
    except ValueError:
        return None
    return "high" if amount >= 500 else "mid" if amount >= 200 else "low"


def write_facts(conn: Connection, effects: Effects, customer_id: str, facts: list[Fact], *, source: str,
                method: str, at: datetime) -> list[Fact]:
    """Store facts that are new or changed; returns those written."""
    return [f for f in facts if write_fact(conn, effects, customer_id, f.key, f.value, source=source, method=method,
                                           confidence=f.confidence, at=at)]


def apply_turn(conn: Connection, deps: Deps, effects: Effects, customer_id: str, text: str, u: Understanding, *,
               source: str, method: str, at: datetime) -> list[str]:
    """Facts, then rule tags and allowed model tags; returns the tags asked to be added."""
    write_facts(conn, effects, customer_id, u.facts, source=source, method=method, at=at)
    slots = {f.key: f.value for f in u.facts}
    if "budget" in slots and (band := budget_band(slots["budget"])):
        slots["budget_band"] = band
    catalog = deps.library.catalog
    chosen: dict[str, str] = {}
    for group in catalog.tag_groups.values():
        for rule in group.rules:
            if (any(k in text for k in rule.keywords) or u.intent in rule.intents
                    or (rule.slot and slots.get(rule.slot) in rule.values)):
                chosen.setdefault(rule.tag, f"rule:{rule.tag}|{source}|conf={rule.confidence:.1f}")
    for tag in u.tags:
        if tag in catalog.tags:  # model output outside the taxonomy is dropped, never written
            chosen.setdefault(tag, f"{method}|{source}|conf=0.7")
    for tag, provenance in chosen.items():
        change_tags(conn, deps, effects, customer_id, [tag], [], source=provenance, at=at)
    return list(chosen)
