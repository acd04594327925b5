"""Batched reads and writes inside one transaction stay exact: a cached read never outlives a write of its row, and
a deferred write is in the database before anything in the block reads its table. Run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select, text, update

import agent.tables  # noqa: F401 — registers the tables init_db creates
import knowledge.tables  # noqa: F401
import sop_graphs.tables  # noqa: F401
from knowledge.batching import cached_reads, deferred_writes
from knowledge.clock import as_utc
from knowledge.db import init_db, insert_ignore, make_engine
from knowledge.tables import Customer, CustomerTag, ProfileFact
from sop_graphs.customers import load_customer, preload, tags_of
from sop_graphs.effects import Effects, mark_run
from sop_graphs.facts import current_fact
from sop_graphs.tables import Outbox, SopRun

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

_C = Customer.__table__.c


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'shop.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("postgres_database")()
    made = make_engine(url)
    init_db(made)
    with made.begin() as conn:
        conn.execute(Customer.__table__.insert(), [
            {"id": cid, "name": name, "owner": "", "added_at": as_utc(T0), "stage": "new", "attributes": {}}
            for cid, name in (("c1", "小王"), ("c2", "小李"))])
        conn.execute(CustomerTag.__table__.insert(), [
            {"customer_id": "c1", "tag": "干皮", "source": "test", "created_at": as_utc(T0)}])
        conn.execute(ProfileFact.__table__.insert(), [
            {"customer_id": "c1", "key": "skin_type", "value": "干皮", "source": "t", "method": "answer",
             "confidence": 1.0, "at": as_utc(T0), "current": True}])
        conn.execute(SopRun.__table__.insert(), [
            {"id": "r1", "sop_id": "s", "sop_version": 1, "family": "f", "customer_id": "c1", "status": "active",
             "trigger": "t", "started_at": as_utc(T0)}])
    yield made
    made.dispose()


def _counting(engine: Engine) -> Callable[[], int]:
    seen = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: object) -> None:
        seen[0] += 1

    return lambda: seen[0]


def test_preloaded_customers_tags_and_facts_are_read_without_a_query(engine: Engine) -> None:
    with engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        statements = _counting(engine)
        assert load_customer(conn, "c1")["name"] == "小王"
        assert tags_of(conn, "c1") == {"干皮"} and tags_of(conn, "c2") == set()
        assert current_fact(conn, "c1", "skin_type")[0] == "干皮"
        assert current_fact(conn, "c2", "skin_type") is None
        assert statements() == 0


def test_a_write_of_a_cached_customer_is_seen_by_the_next_read(engine: Engine) -> None:
    with engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        conn.execute(update(Customer.__table__).where(_C.id == "c1").values(stage="active"))
        insert_ignore(conn, CustomerTag.__table__, [{"customer_id": "c1", "tag": "油皮", "source": "t",
                                                     "created_at": as_utc(T0)}])
        assert load_customer(conn, "c1")["stage"] == "active"
        assert tags_of(conn, "c1") == {"干皮", "油皮"}


def test_a_write_that_names_no_cached_customer_drops_every_cached_row_of_its_table(engine: Engine) -> None:
    with engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1", "c2"])):
        conn.execute(update(Customer.__table__).where(_C.stage == "new").values(stage="silent"))
        assert {load_customer(conn, c)["stage"] for c in ("c1", "c2")} == {"silent"}


def test_a_rolled_back_savepoint_leaves_no_cached_row_behind(engine: Engine) -> None:
    with engine.begin() as conn, cached_reads(conn, lambda cache: preload(conn, cache, ["c1"])):
        savepoint = conn.begin_nested()
        conn.execute(update(Customer.__table__).where(_C.id == "c1").values(name="改名"))
        assert load_customer(conn, "c1")["name"] == "改名"
        savepoint.rollback()
        assert load_customer(conn, "c1")["name"] == "小王"


def test_outside_a_block_every_read_goes_to_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        with cached_reads(conn, lambda cache: preload(conn, cache, ["c1"])):
            pass
        statements = _counting(engine)
        load_customer(conn, "c1")
        assert statements() == 1


def _send(effects: Effects, key: str) -> None:
    effects.send(key=key, action="message", customer_id="c1", at=T0, payload={"text": "你好"})


def test_deferred_rows_of_a_batch_are_written_together_at_the_end(engine: Engine) -> None:
    with engine.begin() as conn:
        with deferred_writes(conn, Effects()):
            for i in range(3):
                effects = Effects()
                _send(effects, f"k{i}")
                effects.flush(conn)
            statements = _counting(engine)
        assert statements() == 1  # one insert for the three rows
        assert conn.execute(select(Outbox.__table__.c.key).order_by(Outbox.__table__.c.key)).scalars().all() == \
            ["k0", "k1", "k2"]


def test_a_read_of_a_deferred_table_inside_the_block_sees_the_rows_written_before_it(engine: Engine) -> None:
    with engine.begin() as conn, deferred_writes(conn, Effects()):
        effects = Effects()
        _send(effects, "early")
        effects.flush(conn)
        mark_run(conn, "r1", current_step="q1")
        assert conn.execute(text("SELECT key FROM outbox")).scalars().all() == ["early"]
        assert conn.execute(select(SopRun.__table__.c.current_step)).scalar() == "q1"


def test_marks_of_one_run_apply_as_in_order(engine: Engine) -> None:
    with engine.begin() as conn:
        with deferred_writes(conn, Effects()):
            mark_run(conn, "r1", waiting="ask:q1:1", current_step="q1")
            mark_run(conn, "r1", waiting=None)
        row = conn.execute(select(SopRun.__table__.c.waiting, SopRun.__table__.c.current_step)).one()
        assert tuple(row) == (None, "q1")


def test_an_error_inside_the_block_writes_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn, deferred_writes(conn, Effects()):
        effects = Effects()
        _send(effects, "lost")
        effects.flush(conn)
        raise RuntimeError("crash")
    with engine.connect() as conn:
        assert conn.execute(select(Outbox.__table__.c.key)).scalars().all() == []


def test_insert_ignore_counts_only_new_rows(engine: Engine) -> None:
    row = {"customer_id": "c2", "tag": "新", "source": "t", "created_at": as_utc(T0)}
    with engine.begin() as conn:
        assert insert_ignore(conn, CustomerTag.__table__, [row, {**row, "tag": "二"}]) == 2
        assert insert_ignore(conn, CustomerTag.__table__, [row, {**row, "tag": "三"}]) == 1
