"""Profile facts with provenance: the one record of what a customer told us (chat or questionnaire).

A questionnaire answer and a fact stated in chat write the same row kind, so the slot, the profile
fact and the tags they imply never disagree; a newer fact for a key supersedes (history is kept).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from knowledge.batching import MISSING, ReadCache, reads
from knowledge.clock import as_utc
from knowledge.db import any_of, run_in
from knowledge.tables import ProfileFact
from sop_graphs.effects import Effects

_F = ProfileFact.__table__.c
_FACT_T = ProfileFact.__table__.name
_CURRENT_IN = select(_F.customer_id, _F.key, _F.value, _F.at).where(any_of(_F.customer_id), _F.current) \
    .order_by(_F.id)


def current_facts(conn: Connection, customer_id: str) -> dict[str, str]:
    return dict(conn.execute(select(_F.key, _F.value).where(_F.customer_id == customer_id, _F.current)).all())


def current_fact(conn: Connection, customer_id: str, key: str) -> tuple[str, datetime] | None:
    """The current value of ``key`` and when it was stated, if any."""
    cache = reads(conn)
    if cache is not None and (facts := cache.get(_FACT_T, customer_id)) is not MISSING:
        return facts.get(key)
    row = conn.execute(select(_F.value, _F.at).where(_F.customer_id == customer_id, _F.key == key, _F.current)
                       .order_by(_F.id.desc()).limit(1)).first()
    return (row.value, as_utc(row.at)) if row else None


def preload_facts(conn: Connection, cache: ReadCache, ids: list[str]) -> None:
    """The current facts of ``ids`` into ``cache`` (one query per 500 customers), for :func:`current_fact`."""
    facts: dict[str, dict[str, tuple[str, datetime]]] = {cid: {} for cid in ids}
    for cid, key, value, at in run_in(conn, _CURRENT_IN, ids):
        facts[cid][key] = (value, as_utc(at))  # ordered by id: the newest current row wins, as current_fact's
    for cid, found in facts.items():
        cache.put(_FACT_T, cid, found)


def write_fact(conn: Connection, effects: Effects, customer_id: str, key: str, value: Any, *, source: str,
               method: str, confidence: float, at: datetime) -> bool:
    """Store one fact if it is new or changed; returns whether it was written."""
    text = "、".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) \
        else str(value)
    have = current_fact(conn, customer_id, key)
    if have is not None and have[0] == text:
        return False
    conn.execute(update(ProfileFact.__table__).where(_F.customer_id == customer_id, _F.key == key, _F.current)
                 .values(current=False))
    conn.execute(ProfileFact.__table__.insert().values(
        customer_id=customer_id, key=key, value=text, source=source, method=method, confidence=confidence,
        at=as_utc(at), current=True))
    effects.note(customer_id=customer_id, at=at, kind="profile", key=f"fact/{source}/{key}",
                 summary=f"画像：{key} = {text}（{method}，置信度 {confidence:.1f}）",
                 detail={"key": key, "value": text, "source": source, "method": method, "confidence": confidence,
                         "previous": have[0] if have else None})
    return True


def record_answer(conn: Connection, effects: Effects, customer_id: str, slot: str, value: Any, *, source: str,
                  method: str, confidence: float, at: datetime) -> None:
    """A slot's answer, wherever it came from: the profile attribute the SOP reads and the profile fact, together."""
    from knowledge.tables import Customer

    table = Customer.__table__
    attributes = conn.execute(select(table.c.attributes).where(table.c.id == customer_id)).scalar()
    if attributes is not None and attributes.get(slot) != value:
        conn.execute(update(table).where(table.c.id == customer_id).values(attributes={**attributes, slot: value}))
    write_fact(conn, effects, customer_id, slot, value, source=source, method=method, confidence=confidence, at=at)


QUESTIONS_DECLINED_DAYS = 30
_DECLINED = "questions_declined_until"


def decline_questions(conn: Connection, customer_id: str, *, until: datetime) -> None:
    """The customer asked not to be asked questions ("别问了"): no SOP asks them anything until ``until``."""
    from knowledge.tables import Customer

    table = Customer.__table__
    attributes = conn.execute(select(table.c.attributes).where(table.c.id == customer_id)).scalar()
    if attributes is not None:
        conn.execute(update(table).where(table.c.id == customer_id)
                     .values(attributes={**attributes, _DECLINED: as_utc(until).isoformat()}))


def questions_declined(customer: dict[str, Any] | None, now: datetime) -> bool:
    until = ((customer or {}).get("attributes") or {}).get(_DECLINED)
    return bool(until) and datetime.fromisoformat(until) > as_utc(now)
