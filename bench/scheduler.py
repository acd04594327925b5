"""Scheduler benchmark: enrol N customers (added within one hour) into the nurture SOP, then advance 30 days.

Prints enrolment rate, due actions/s over the 30 days and on the slowest busy day, peak RSS, and an
exactly-once check.
Usage: python bench/scheduler.py [--customers 100000] [--home /tmp/sopagent-bench]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from agent.runtime import Runtime
from agent.tables import InboundEvent
from knowledge.clock import SimClock
from knowledge.settings import Settings

START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday 09:00 Shanghai


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def due_count(stats: dict[str, int]) -> int:
    """Due rows handled: pushes and run ends, timeouts, enrolments and graph resumes."""
    return sum(stats.get(kind, 0) for kind in ("push", "resume", "timeout", "enrol", "end"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=Path("/tmp/sopagent-bench"))
    args = parser.parse_args()
    if args.home.exists():
        shutil.rmtree(args.home)
    clock = SimClock(START)
    runtime = Runtime.build(Settings(home=args.home, worker_batch=5000), clock=clock)
    deps = runtime.deps
    spread = timedelta(hours=1) / max(args.customers, 1)
    rows = [{"key": f"add-{i}", "customer_id": f"c{i:06d}", "kind": "customer_added", "payload": {"name": f"客户{i}"},
             "received_at": START + spread * i, "status": "pending"} for i in range(args.customers)]
    with deps.engine.begin() as conn:
        for start in range(0, len(rows), 20_000):
            conn.execute(InboundEvent.__table__.insert(), rows[start:start + 20_000])
    del rows

    t0 = time.perf_counter()
    runtime.run_until(START + timedelta(hours=1))  # adds, welcome and first question; timeouts come at +3 h
    enrol_s = time.perf_counter() - t0
    stats_before = dict(runtime.worker.stats)

    t1 = time.perf_counter()
    days = []  # (simulated day, due actions, wall seconds): "sustained" means no day falls far below the mean
    for day in range(31):  # every questionnaire timeout, push, end and re-activation
        before, t_day = due_count(runtime.worker.stats), time.perf_counter()
        runtime.run_until(START + timedelta(days=day + 1))
        days.append((day, due_count(runtime.worker.stats) - before, time.perf_counter() - t_day))
    run_s = time.perf_counter() - t1
    stats = {k: v - stats_before.get(k, 0) for k, v in runtime.worker.stats.items()}
    due_actions = due_count(stats)
    busy = [d for d in days if d[1] >= args.customers]  # days with at least one action per customer
    slowest = min(busy, key=lambda d: d[1] / d[2]) if busy else None
    sent = stats.get("sent", 0)

    sandbox = sqlite3.connect(args.home / "sandbox.sqlite")
    with deps.engine.connect() as db:  # the shop's database: SQLite, or PostgreSQL with SOPAGENT_DATABASE_URL
        runs = dict(db.execute(text("SELECT status, count(*) FROM soprun WHERE sop_id='new_customer_nurture' "
                                    "GROUP BY status")).all())
        pending_due = db.execute(text("SELECT count(*) FROM duetouchpoint WHERE status='pending' AND due_at <= :t"),
                                 {"t": START + timedelta(days=31)}).scalar()
        pending_out = db.execute(text("SELECT count(*) FROM outbox WHERE status='pending'")).scalar()
        outbox_sent = db.execute(text("SELECT count(*) FROM outbox WHERE status='sent'")).scalar()
    records, repeats = sandbox.execute("SELECT count(*), coalesce(sum(attempts > 1), 0) FROM sandbox_record").fetchone()
    per_customer = dict(sandbox.execute(
        "SELECT n, count(*) FROM (SELECT customer_id, count(*) n FROM sandbox_record "
        "WHERE key LIKE 'new_customer_nurture/%' AND action != 'tag' GROUP BY customer_id) GROUP BY n"))
    exactly_once = (repeats == 0 and records == outbox_sent and pending_out == 0
                    and runs.get("completed", 0) == args.customers and per_customer == {9: args.customers})
    print(f"database:             {deps.engine.dialect.name}")
    print(f"customers:            {args.customers:,}")
    print(f"enrolment:            {enrol_s:.1f}s ({args.customers / enrol_s:,.0f} enrolments/s, graph start to first ask)")
    print(f"30-day run:           {run_s:.1f}s")
    print(f"due actions:          {due_actions:,} ({due_actions / run_s:,.0f}/s: "
          f"{stats.get('resume', 0):,} graph resumes, {stats.get('timeout', 0):,} batched timeouts, "
          f"{stats.get('enrol', 0):,} batched enrolments, {stats.get('push', 0):,} pushes and ends)")
    if slowest is not None:
        print(f"slowest busy day:     day {slowest[0]}: {slowest[1]:,} due actions in {slowest[2]:.1f}s "
              f"({slowest[1] / slowest[2]:,.0f}/s; {len(busy)} days with >= 1 action per customer)")
    print(f"outbox sent:          {sent:,} ({sent / run_s:,.0f}/s), deferred {stats.get('deferred', 0):,}")
    print(f"peak RSS:             {peak_rss_mib():,.0f} MiB")
    print(f"nurture runs:         {runs}")
    print(f"messages/customer:    {per_customer} (welcome, q1, invite, coupon, day 1/3/7/14/30)")
    print(f"exactly once:         {'OK' if exactly_once else 'FAILED'} (records {records:,} = outbox sent {outbox_sent:,},"
          f" repeated keys {repeats}, pending outbox {pending_out}, overdue due rows {pending_due})")


if __name__ == "__main__":
    main()
