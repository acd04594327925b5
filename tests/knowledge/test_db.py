"""SQLite engines: one process's writers are served in the order they arrived, and a stuck writer is an error."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from knowledge.db import WriteGate, make_engine, write_gate


def _engine(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE log (who TEXT)"))
    return engine


def test_writers_of_one_process_commit_in_the_order_they_asked(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    first = engine.connect()
    first.execute(text("INSERT INTO log VALUES ('first')"))  # holds the write until it commits
    queued: list[threading.Thread] = []
    for name in ("second", "third", "fourth"):
        thread = threading.Thread(target=lambda n=name: _write(engine, n))
        thread.start()
        queued.append(thread)
        _wait_queued(engine, len(queued))
    first.commit()
    first.close()
    for thread in queued:
        thread.join(30)
    with engine.connect() as conn:
        assert list(conn.execute(text("SELECT who FROM log ORDER BY rowid")).scalars()) == \
            ["first", "second", "third", "fourth"]


def test_a_rolled_back_writer_lets_the_next_one_in(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO log VALUES ('lost')"))
        raise RuntimeError("the transaction fails")
    _write(engine, "next")
    with engine.connect() as conn:
        assert list(conn.execute(text("SELECT who FROM log")).scalars()) == ["next"]


def test_a_writer_that_waits_past_the_timeout_gets_database_is_locked() -> None:
    gate = WriteGate(timeout=0.01)
    gate.acquire()
    with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
        gate.acquire()
    gate.release()
    gate.acquire()  # the one that gave up left the queue: the gate is free again


def test_reads_do_not_queue_behind_a_writer(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.begin() as writer:
        writer.execute(text("INSERT INTO log VALUES ('open')"))
        with engine.connect() as reader:
            assert reader.execute(text("SELECT count(*) FROM log")).scalar() == 0


def _write(engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO log VALUES (:n)"), {"n": name})


def _wait_queued(engine, n: int) -> None:
    gate = write_gate(engine)
    assert gate is not None
    while gate.waiting < n:
        threading.Event().wait(0.001)


def test_an_older_embedded_database_gains_the_columns_added_since(tmp_path: Path) -> None:
    from knowledge.db import init_db
    from sop_graphs.tables import EmployeeTask

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    init_db(engine)
    with engine.begin() as conn:  # as a database made before EmployeeTask.done_at existed
        conn.execute(text("ALTER TABLE employeetask DROP COLUMN done_at"))
    init_db(engine)
    with engine.connect() as conn:
        columns = {row[1] for row in conn.execute(text(f"PRAGMA table_info({EmployeeTask.__table__.name})"))}
    assert "done_at" in columns
