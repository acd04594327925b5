"""Profile facts and tags from a turn, written with provenance (message, rule or model, confidence).

Tags come only from the operator's taxonomy: rule tags by keyword/intent/fact, model tags filtered
against the taxonomy. A fact for a key the customer already has supersedes it; history is kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from agent.tables import ProfileFact
from agent.understanding import Fact, Understanding
from knowledge.clock import as_utc
from sop_graphs.deps import Deps
from sop_graphs.effects import Effects
from sop_graphs.enrolment import change_tags

_F = ProfileFact.__table__.c


def budget_band(value: str) -> str | None:
    try:
        amount = float(value)
    except ValueError:
        return None
    return "high" if amount >= 500 else "mid" if amount >= 200 else "low"


def current_facts(conn: Connection, customer_id: str) -> dict[str, str]:
    return dict(conn.execute(select(_F.key, _F.value).where(_F.customer_id == customer_id, _F.current)).all())


def write_facts(conn: Connection, effects: Effects, customer_id: str, facts: list[Fact], *, source: str,
                method: str, at: datetime) -> list[Fact]:
    """Store facts that are new or changed; returns those written."""
    have = current_facts(conn, customer_id)
    written = []
    for fact in facts:
        if have.get(fact.key) == fact.value:
            continue
        conn.execute(update(ProfileFact.__table__).where(_F.customer_id == customer_id, _F.key == fact.key,
                                                         _F.current).values(current=False))
        conn.execute(ProfileFact.__table__.insert().values(
            customer_id=customer_id, key=fact.key, value=fact.value, source=source, method=method,
            confidence=fact.confidence, at=as_utc(at), current=True))
        effects.note(customer_id=customer_id, at=at, kind="profile", key=f"fact/{source}/{fact.key}",
                     summary=f"画像：{fact.key} = {fact.value}（{method}，置信度 {fact.confidence:.1f}）",
                     detail={"key": fact.key, "value": fact.value, "source": source, "method": method,
                             "confidence": fact.confidence, "previous": have.get(fact.key)})
        have[fact.key] = fact.value
        written.append(fact)
    return written


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
