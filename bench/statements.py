"""SQL statements per enrolment and per due action: one in-process pump on PostgreSQL, every statement counted.

N contacts arrive at once (``customer_added``); the runtime runs to their welcome and first question (enrolment),
then through the given simulated days of the nurture SOP (timeouts, pure tails, coupons, sends). Prints the
statements of each phase per contact / per due action, and the most frequent statements (with the rows they
carried: an executemany counts once), so a batching regression shows as a statement that reappears per customer.

Usage: python bench/statements.py --postgres postgresql+psycopg://USER:PW@HOST/postgres [--customers 2000]
       [--days 8] [--top 12]
The role must be allowed to create databases; the database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from agent.runtime import Runtime
from agent.tables import InboundEvent
from knowledge.clock import SimClock
from knowledge.settings import Settings

START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday 09:00 Shanghai, as bench/scale.py
DONE = text("SELECT count(*) FROM duetouchpoint WHERE status != 'pending'")


class Statements:
    """Statements sent on an engine, by their first words, with the rows each carried."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                 executemany: bool) -> None:
        key = " ".join(statement.split())[:100]
        self.sent[key] += 1
        self.rows[key] += len(parameters) if executemany else 1

    def total(self) -> int:
        return sum(self.sent.values())

    def report(self, top: int) -> None:
        for key, count in self.sent.most_common(top):
            print(f"    {count:8,} statements {self.rows[key]:9,} rows  {key}")
        self.sent.clear()
        self.rows.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=float, default=8)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    name = f"sopagent_statements_{os.getpid()}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    home = Path(tempfile.mkdtemp(prefix="sopagent-statements-"))
    url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    os.environ["SOPAGENT_DATABASE_URL"] = url
    probe = create_engine(url)  # counts due actions without being counted
    os.environ["SOPAGENT_WORKER_BATCH"] = "2000"
    try:
        runtime = Runtime.build(Settings(home=home, embedder="hash"), clock=SimClock(START))
        engine = runtime.deps.engine
        with engine.begin() as conn:
            conn.execute(InboundEvent.__table__.insert(), [
                {"key": f"add-{i}", "customer_id": f"c{i:07d}", "kind": "customer_added",
                 "payload": {"name": f"客户{i}"}, "received_at": START, "status": "pending"}
                for i in range(args.customers)])
        counted = Statements()
        event.listen(engine, "before_cursor_execute", counted)
        t0 = time.perf_counter()
        runtime.run_until(START + timedelta(minutes=10))
        elapsed = time.perf_counter() - t0
        print(f"enrolment: {args.customers:,} contacts in {elapsed:.1f}s, {counted.total():,} statements "
              f"({counted.total() / args.customers:.1f} per contact)")
        counted.report(args.top)
        if args.days:
            with probe.connect() as conn:
                before = conn.execute(DONE).scalar() or 0
            t0 = time.perf_counter()
            runtime.run_until(START + timedelta(days=args.days))
            elapsed = time.perf_counter() - t0
            statements = counted.total()  # report() started the count afresh
            with probe.connect() as conn:
                actions = (conn.execute(DONE).scalar() or 0) - before
            print(f"{args.days:g} days: {actions:,} due actions in {elapsed:.1f}s, {statements:,} statements "
                  f"({statements / max(actions, 1):.2f} per due action)")
            counted.report(args.top)
        engine.dispose()
    finally:
        probe.dispose()
        os.environ.pop("SOPAGENT_DATABASE_URL", None)
        shutil.rmtree(home, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
