"""PostgreSQL as the production store: the migrations build exactly the models' schema, upgrading is idempotent
and safe when processes start together, and the pipeline behaves there exactly as on SQLite."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import SQLModel

import agent.tables  # noqa: F401  (every table on the metadata)
import api.tables  # noqa: F401
import knowledge.tables  # noqa: F401
import sop_graphs.tables  # noqa: F401
from api.demo import run_demo
from knowledge import migrate
from knowledge.db import init_db, make_engine


def test_migrations_from_an_empty_database_build_exactly_the_models(postgres_database) -> None:
    engine = make_engine(postgres_database())
    init_db(engine)
    assert migrate.current(engine) == migrate.head()
    assert migrate.differences(engine, SQLModel.metadata) == [], "the models changed: sopagent db revision -m ..."


def test_upgrading_again_or_from_two_processes_at_once_is_safe(postgres_database) -> None:
    url = postgres_database()
    errors: list[BaseException] = []

    def start() -> None:
        try:
            init_db(make_engine(url))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    init_db(make_engine(url))
    assert migrate.current(make_engine(url)) == migrate.head()


def _demo(home: Path, monkeypatch: pytest.MonkeyPatch, url: str | None) -> str:
    from knowledge.settings import get_settings

    monkeypatch.setenv("SOPAGENT_EMBEDDER", "hash")
    if url:
        monkeypatch.setenv("SOPAGENT_DATABASE_URL", url)
    else:
        monkeypatch.delenv("SOPAGENT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    out = io.StringIO()
    try:
        run_demo(home, days=30, console=Console(file=out, width=150), shop_days=0, shop_customers=1)
    finally:
        get_settings.cache_clear()
    return out.getvalue()


def test_the_scripted_month_on_postgresql_is_the_month_on_sqlite(postgres_database, tmp_path, monkeypatch) -> None:
    on_sqlite = _demo(tmp_path / "sqlite", monkeypatch, None)
    on_postgres = _demo(tmp_path / "postgres", monkeypatch, postgres_database())
    assert on_postgres == on_sqlite and "重复投递：0 条" in on_postgres


def test_a_database_of_an_earlier_version_is_upgraded_with_its_data(postgres_database) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select

    from knowledge.tables import Customer

    engine = make_engine(postgres_database())
    migrate.upgrade(engine, "0001")  # the schema the first PostgreSQL release made
    with engine.begin() as conn:
        conn.execute(Customer.__table__.insert().values(id="c1", name="小林", owner="", stage="new", attributes={},
                                                        added_at=datetime(2026, 11, 1, tzinfo=UTC)))
    init_db(engine)  # what a newer service does when it starts
    assert migrate.current(engine) == migrate.head() != "0001"
    with engine.connect() as conn:
        assert conn.execute(select(Customer.name).where(Customer.id == "c1")).scalar() == "小林"


def test_work_queued_before_the_shard_column_is_given_the_shard_the_workers_compute(postgres_database) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import text

    from knowledge.shards import shard_of

    engine = make_engine(postgres_database())
    migrate.upgrade(engine, "0002")  # before several workers: the queues have no shard
    customers = [f"wx{i:04d}" for i in range(300)] + [""]
    with engine.begin() as conn:
        for i, cid in enumerate(customers):
            conn.execute(text("INSERT INTO duetouchpoint (key, kind, customer_id, due_at, status, payload) "
                              "VALUES (:k, 'push', :c, :at, 'pending', '{}')"),
                         {"k": f"k{i}", "c": cid or None, "at": datetime(2026, 12, 1, tzinfo=UTC)})
    init_db(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(text("SELECT coalesce(customer_id, ''), shard FROM duetouchpoint")).all())
    assert got == {cid: shard_of(cid) for cid in customers}
    assert len(set(got.values())) > 50, "customers spread over the shards"


def test_a_redelivered_event_is_recognised_on_postgresql(postgres_database, tmp_path) -> None:
    from datetime import UTC, datetime

    from agent.inbound import submit
    from agent.runtime import Runtime
    from knowledge.clock import SimClock
    from knowledge.settings import Settings

    settings = Settings(home=tmp_path / "home", database_url=postgres_database(), embedder="hash")
    runtime = Runtime.build(settings, clock=SimClock(datetime(2026, 11, 23, 2, tzinfo=UTC)))
    first = submit(runtime.deps, key="m1", customer_id="c1", kind="customer_added", payload={})
    again = submit(runtime.deps, key="m1", customer_id="c1", kind="customer_added", payload={})
    assert (first, again) == (True, False)
