"""Reads and low-level writes of customer state: tags (with provenance) and lifecycle stage."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection

from knowledge.batching import ReadCache, read_through, reads
from knowledge.clock import as_utc
from knowledge.db import any_of, insert_ignore, run_in
from knowledge.tables import Customer, CustomerTag
from sop_graphs.effects import Effects
from sop_graphs.facts import preload_facts
from sop_graphs.spec import Catalog

STAGES = ("new", "active", "customer", "repeat", "silent", "churned")
FROM_WECOM = "wecom/"  # tag source of changes WeCom reported (edit_external_contact)
WEB_PREFIX = "web_"  # customers of the web chat: their replies travel in the HTTP response, not via WeCom
WEB_CHANNEL = "web"  # the channel code of web chat customers (an SOP audience naming it admits them)
BROADCAST = "__broadcast__"  # the subject of group and moments runs, which address no single customer

_C = Customer.__table__.c
_T = CustomerTag.__table__.c
# built once: constructing statements costs more than running them on SQLite
_CUSTOMER = select(Customer.__table__).where(_C.id == bindparam("cid"))
_TAGS = select(_T.tag).where(_T.customer_id == bindparam("cid"))
_STAGE = select(_C.stage).where(_C.id == bindparam("cid"))
_CUSTOMERS_IN = select(Customer.__table__).where(any_of(_C.id))
_TAGS_IN = select(_T.customer_id, _T.tag).where(any_of(_T.customer_id))


_CUSTOMER_T, _TAG_T = Customer.__table__.name, CustomerTag.__table__.name


def load_customer(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    row = read_through(conn, _CUSTOMER_T, customer_id,
                       lambda: conn.execute(_CUSTOMER, {"cid": customer_id}).mappings().first())
    return dict(row) if row else None


def remember_customer(conn: Connection, row: dict[str, Any]) -> None:
    """A customer row just written and read back, for the rest of a ``cached_reads`` block, if in one."""
    cache = reads(conn)
    if cache is not None:
        cache.put(_CUSTOMER_T, row["id"], row)


def load_customers(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {row.id: dict(row._mapping) for row in run_in(conn, _CUSTOMERS_IN, ids)}


def tags_of(conn: Connection, customer_id: str) -> set[str]:
    return set(read_through(conn, _TAG_T, customer_id,
                            lambda: frozenset(conn.execute(_TAGS, {"cid": customer_id}).scalars())))


def preload(conn: Connection, cache: ReadCache, ids: Iterable[str]) -> None:
    """Customer rows, tags and current profile facts of ``ids`` into ``cache``: three queries for a whole batch
    (``knowledge.batching.cached_reads``), then :func:`load_customer`, :func:`tags_of` and
    ``facts.current_fact`` read them from it."""
    ids = [i for i in dict.fromkeys(ids) if i != BROADCAST]
    customers = load_customers(conn, ids)
    tags = tags_of_many(conn, ids)
    for cid in ids:
        cache.put(_CUSTOMER_T, cid, customers.get(cid))
        cache.put(_TAG_T, cid, frozenset(tags[cid]))
    preload_facts(conn, cache, ids)


def tags_of_many(conn: Connection, ids: Iterable[str]) -> dict[str, set[str]]:
    ids = list(set(ids))
    found: dict[str, set[str]] = {i: set() for i in ids}
    for customer_id, tag in run_in(conn, _TAGS_IN, ids):
        found[customer_id].add(tag)
    return found


def write_tags(conn: Connection, effects: Effects, catalog: Catalog, customer_id: str, add: Iterable[str],
               remove: Iterable[str], *, source: str, at: datetime, run_id: str | None = None,
               ) -> tuple[list[str], list[str]]:
    """Add and remove tags; a tag of an exclusive group replaces its siblings. Returns (added, removed)."""
    current = tags_of(conn, customer_id)
    add, remove = list(dict.fromkeys(add)), set(remove)
    for tag in add:
        for group in catalog.tag_groups.values():
            if group.exclusive and tag in group.tags:
                remove |= {t for t in group.tags if t != tag and t in current}
    added = [t for t in add if t not in current]
    removed = sorted((remove & current) - set(add))
    insert_ignore(conn, CustomerTag.__table__, [
        {"customer_id": customer_id, "tag": t, "source": source, "created_at": as_utc(at)} for t in added])
    if removed:
        conn.execute(delete(CustomerTag.__table__).where(_T.customer_id == customer_id, _T.tag.in_(removed)))
    for tag in added:
        effects.note(customer_id=customer_id, at=at, kind="tag", summary=f"+标签「{tag}」", run_id=run_id,
                     key=f"tag+/{customer_id}/{tag}/{source}", detail={"tag": tag, "source": source})
    for tag in removed:
        effects.note(customer_id=customer_id, at=at, kind="tag", summary=f"-标签「{tag}」", run_id=run_id,
                     key=f"tag-/{customer_id}/{tag}/{source}", detail={"tag": tag, "source": source})
    if (added or removed) and not source.startswith(FROM_WECOM):  # WeCom already has what it told us
        effects.send(key=f"tagsync/{customer_id}/{source}", action="tag", customer_id=customer_id, at=at,
                     payload={"add": added, "remove": removed}, run_id=run_id, mode="api", executor="ai")
    return added, removed


def set_stage(conn: Connection, effects: Effects, customer_id: str, stage: str, *, at: datetime,
              reason: str) -> bool:
    """Move the customer to ``stage``; records the change. Returns whether it changed."""
    if stage not in STAGES:
        raise ValueError(f"unknown lifecycle stage {stage!r}")
    current = conn.execute(_STAGE, {"cid": customer_id}).scalar()
    if current is None or current == stage:
        return False
    conn.execute(update(Customer.__table__).where(_C.id == customer_id).values(stage=stage))
    effects.note(customer_id=customer_id, at=at, kind="stage", summary=f"阶段 {current} → {stage}（{reason}）",
                 detail={"from": current, "to": stage, "reason": reason})
    return True
