"""Batched reads and writes inside one transaction stay exact: a cached read never outlives a write of its row, and
a deferred write is in the database before anything in the block reads its table. Run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, event, select, text, update

import agent.tables  # noqa: F401 — registers the tables init_db creates
import knowledge.tables  # noqa: F401
import sop_graphs.tables  # noqa: F401
from knowledge.batching import cached_reads, deferred_writes
from knowledge.clock import as_utc
from knowledge.db import insert_ignore
from knowledge.tables import Customer, CustomerTag
from sop_graphs.customers import load_customer, preload, tags_of
from sop_graphs.effects import Effects, mark_run
from sop_graphs.facts import current_fact
from sop_graphs.tables import Outbox, SopRun

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

_C = Customer.__table__.c


def _counting(shop_engine: Engine) -> Callable[[], int]:
    seen = [0]

    @event.listens_for(shop_engine, "before_cursor_execute")
    def _count(*_args: object) -> None:
        seen[0] += 1

    return lambda: seen[0]


def test_preloaded_customers_tags_and_facts_are_read_without_a_query(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        statements = _counting(shop_engine)
        assert load_customer(conn, "c1")["name"] == "小王"
        assert tags_of(conn, "c1") == {"干皮"} and tags_of(conn, "c2") == set()
        assert current_fact(conn, "c1", "skin_type")[0] == "干皮"
        assert current_fact(conn, "c2", "skin_type") is None
        assert statements() == 0


def test_a_write_of_a_cached_customer_is_seen_by_the_next_read(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        conn.execute(update(Customer.__table__).where(_C.id == "c1").values(stage="active"))
        insert_ignore(conn, CustomerTag.__table__, [{"customer_id": "c1", "tag": "油皮", "source": "t",
                                                     "created_at": as_utc(T0)}])
        assert load_customer(conn, "c1")["stage"] == "active"
        assert tags_of(conn, "c1") == {"干皮", "油皮"}


def test_a_batch_insert_drops_only_the_cached_rows_of_the_customers_it_names(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        insert_ignore(conn, CustomerTag.__table__, [{"customer_id": "c1", "tag": tag, "source": "t",
                                                     "created_at": as_utc(T0)} for tag in ("油皮", "敏感肌")])
        statements = _counting(shop_engine)
        assert tags_of(conn, "c2") == set() and statements() == 0
        assert tags_of(conn, "c1") == {"干皮", "油皮", "敏感肌"} and statements() == 1


def test_a_write_that_names_no_cached_customer_drops_every_cached_row_of_its_table(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        conn.execute(update(Customer.__table__).where(_C.stage == "new").values(stage="silent"))
        assert {load_customer(conn, c)["stage"] for c in ("c1", "c2")} == {"silent"}


def test_a_rolled_back_savepoint_leaves_no_cached_row_behind(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1"])):
        savepoint = conn.begin_nested()
        conn.execute(update(Customer.__table__).where(_C.id == "c1").values(name="改名"))
        assert load_customer(conn, "c1")["name"] == "改名"
        savepoint.rollback()
        assert load_customer(conn, "c1")["name"] == "小王"


def test_outside_a_block_every_read_goes_to_the_database(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn:
        with cached_reads(conn, lambda cache: preload(conn, cache, ["c1"])):
            pass
        statements = _counting(shop_engine)
        load_customer(conn, "c1")
        assert statements() == 1


def _send(effects: Effects, key: str) -> None:
    effects.send(key=key, action="message", customer_id="c1", at=T0, payload={"text": "你好"})


def test_deferred_rows_of_a_batch_are_written_together_at_the_end(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn:
        with deferred_writes(conn, Effects()):
            for i in range(3):
                effects = Effects()
                _send(effects, f"k{i}")
                effects.flush(conn)
            statements = _counting(shop_engine)
        assert statements() == 1  # one insert for the three rows
        assert conn.execute(select(Outbox.__table__.c.key).order_by(Outbox.__table__.c.key)).scalars().all() == \
            ["k0", "k1", "k2"]


def test_a_read_of_a_deferred_table_inside_the_block_sees_the_rows_written_before_it(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn, deferred_writes(conn, Effects()):
        effects = Effects()
        _send(effects, "early")
        effects.flush(conn)
        mark_run(conn, "r1", current_step="q1")
        assert conn.execute(text("SELECT key FROM outbox")).scalars().all() == ["early"]
        assert conn.execute(select(SopRun.__table__.c.current_step)).scalar() == "q1"


def test_marks_of_one_run_apply_as_in_order(shop_engine: Engine) -> None:
    with shop_engine.begin() as conn:
        with deferred_writes(conn, Effects()):
            mark_run(conn, "r1", waiting="ask:q1:1", current_step="q1")
            mark_run(conn, "r1", waiting=None)
        row = conn.execute(select(SopRun.__table__.c.waiting, SopRun.__table__.c.current_step)).one()
        assert tuple(row) == (None, "q1")


def test_an_error_inside_the_block_writes_nothing(shop_engine: Engine) -> None:
    with pytest.raises(RuntimeError), shop_engine.begin() as conn, deferred_writes(conn, Effects()):
        effects = Effects()
        _send(effects, "lost")
        effects.flush(conn)
        raise RuntimeError("crash")
    with shop_engine.connect() as conn:
        assert conn.execute(select(Outbox.__table__.c.key)).scalars().all() == []
