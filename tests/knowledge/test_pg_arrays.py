"""Writes of many rows at once (insert_ignore, insert_many, update_many): one statement over column arrays on
PostgreSQL, executemany on SQLite, and the rows read back exactly as the ORM writes them one by one."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from knowledge.clock import as_utc
from knowledge.db import insert_ignore, insert_many, update_many
from knowledge.shards import shard_of
from knowledge.tables import CustomerTag
from sop_graphs.tables import ContactState, Outbox, SopRun
from tests.knowledge.conftest import SHOP_T0


def test_insert_ignore_counts_only_new_rows(shop_engine: Engine) -> None:
    row = {"customer_id": "c2", "tag": "新", "source": "t", "created_at": as_utc(SHOP_T0)}
    with shop_engine.begin() as conn:
        assert insert_ignore(conn, CustomerTag.__table__, [row, {**row, "tag": "二"}]) == 2
        assert insert_ignore(conn, CustomerTag.__table__, [row, {**row, "tag": "三"}]) == 1


def test_insert_ignore_skips_a_row_repeating_an_earlier_row_of_its_own_batch(shop_engine: Engine) -> None:
    row = {"customer_id": "c2", "tag": "新", "source": "t", "created_at": as_utc(SHOP_T0)}
    with shop_engine.begin() as conn:
        assert insert_ignore(conn, CustomerTag.__table__, [row, {**row, "source": "again"}]) == 1
        assert conn.execute(select(CustomerTag.__table__.c.source)
                            .where(CustomerTag.__table__.c.customer_id == "c2")).scalars().all() == ["t"]


def test_batch_inserted_rows_read_back_as_a_single_orm_insert_writes_them(shop_engine: Engine) -> None:
    local = datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    payload = {"text": "「面霜」到手价 ¥199\n", "items": [1, 2.5, None, True], "nested": {"键": ["值"]}}
    row = {"key": "k1", "action": "message", "customer_id": "c1", "run_id": None, "payload": payload,
           "not_before": local, "created_at": local, "marketing": True}
    with shop_engine.begin() as conn:
        conn.execute(Outbox.__table__.insert(), [{**row, "key": "orm"}])
        assert insert_ignore(conn, Outbox.__table__, [row, {**row, "key": "k2", "customer_id": "c2"}]) == 2
        got = {r.key: r for r in conn.execute(select(Outbox.__table__))}
    columns = [c.name for c in Outbox.__table__.columns if c.name not in ("id", "key")]
    assert [getattr(got["k1"], c) for c in columns] == [getattr(got["orm"], c) for c in columns]
    assert got["k1"].payload == payload and as_utc(got["k1"].not_before) == as_utc(local)
    assert (got["k1"].mode, got["k1"].status, got["k1"].run_id) == ("kf", "pending", None)
    assert got["k2"].shard == shard_of("c2")


def test_insert_many_writes_every_row_with_its_column_defaults(shop_engine: Engine) -> None:
    rows = [{"customer_id": cid, "last_touch": None, "day": None, "day_count": 0, "kf_sent": 0} for cid in ("c1", "c2")]
    with shop_engine.begin() as conn:
        insert_many(conn, ContactState.__table__, rows)
        got = conn.execute(select(ContactState.__table__.c.customer_id, ContactState.__table__.c.last_touch)
                           .order_by(ContactState.__table__.c.customer_id)).all()
    assert [tuple(r) for r in got] == [("c1", None), ("c2", None)]


def test_update_many_sets_each_rows_own_values_and_only_on_its_key(shop_engine: Engine) -> None:
    later = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    with shop_engine.begin() as conn:
        insert_many(conn, SopRun.__table__, [{"id": "r2", "sop_id": "s", "sop_version": 1, "family": "g",
                                              "customer_id": "c2", "status": "active", "trigger": "t",
                                              "started_at": as_utc(SHOP_T0)}])
        update_many(conn, SopRun.__table__, "id", [
            {"id": "r1", "current_step": "ask_skin", "waiting": None, "waiting_since": later},
            {"id": "nobody", "current_step": "x", "waiting": "w", "waiting_since": later}])
        runs = {r.id: r for r in conn.execute(select(SopRun.__table__))}
    assert (runs["r1"].current_step, runs["r1"].waiting) == ("ask_skin", None)
    assert as_utc(runs["r1"].waiting_since) == as_utc(later)
    assert runs["r2"].current_step is None and runs["r2"].waiting_since is None
