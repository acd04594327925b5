"""Scale benchmark: N customers on PostgreSQL, worked by 1, 2 and 4 worker processes.

For each worker count: a fresh database; N contacts arrive at once (an import: ``customer_added`` events at one
moment); worker processes (``python -m api.simulation follow``, each a real ``Service`` pumping the customer shards
it claims) follow one simulated clock that this process moves (``api.simulation.conduct``) through the nurture
SOP's days. Prints per configuration: enrolments/s (contact added → run started → welcome and first question
sent), due actions/s over the following days (pushes, question timeouts, run ends, graph resumes), outbox sends/s,
and an exactly-once check (every send recorded once, nothing pending, each customer's nine nurture messages).

Each phase also prints where the CPU went (Linux): cores busy on the machine, and the shares of the worker
processes, of PostgreSQL's processes (all of the server's, read from /proc: run it on a quiet machine) and of this
conductor. The pumps skip the daily review report during the run (it is once a day, and compressed days would make
it weigh as if it ran every few seconds); one day's report is timed on its own afterwards. ``--repeat K`` runs
each configuration K times and prints the median rates as well: on a shared VM two runs of the same code differ
by a third.

Usage: python bench/scale.py --postgres postgresql+psycopg://USER:PW@HOST/postgres [--customers 1000000]
       [--workers 1,2,4] [--days 31] [--repeat 1] [--home /tmp/sopagent-scale] [--profile DIR]
The role must be allowed to create databases; each configuration's database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agent.runtime import Runtime
from agent.tables import InboundEvent
from api.report import daily
from api.simulation import conduct, stop_followers, wait_for_followers
from knowledge.clock import SimClock
from knowledge.settings import Settings

START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday 09:00 Shanghai
ROOT = Path(__file__).resolve().parents[1]
PATIENCE = 6 * 3600.0  # seconds the conductor waits at one moment: a million contacts arriving at once take long
ENROLLED = timedelta(minutes=10)  # by then every added contact has had its welcome and first question


class CpuMeter:
    """CPU seconds between :meth:`start` and :meth:`stop`: the machine's busy time (/proc/stat), the given worker
    processes', PostgreSQL's (every process named postgres; a backend that exits mid-phase takes its time with it)
    and this process's."""

    TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, workers: list[int]) -> None:
        self.workers = workers
        self.available = Path("/proc/stat").exists()

    def _machine(self) -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / self.TICK  # all but idle and iowait

    @classmethod
    def _process(cls, pid: int | str) -> tuple[str, float]:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return "", 0.0
        name, rest = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
        return name, (int(rest[11]) + int(rest[12])) / cls.TICK  # utime + stime

    def _postgres(self) -> float:
        total = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                name, cpu = self._process(entry.name)
                total += cpu if name.startswith("postgres") else 0.0
        return total

    def _read(self) -> tuple[float, float, float, float, float]:
        return (time.perf_counter(), self._machine(), sum(self._process(p)[1] for p in self.workers),
                self._postgres(), time.process_time())

    def start(self) -> None:
        self._start = self._read() if self.available else None

    def stop(self) -> str:
        if self._start is None:
            return "not measured (no /proc)"
        wall, machine, workers, postgres, conductor = (b - a for a, b in zip(self._start, self._read(), strict=True))
        used = max(workers + postgres + conductor, 1e-9)
        return (f"{machine / wall:.2f} of {os.cpu_count()} cores busy; workers {workers / used:.0%}, PostgreSQL "
                f"{postgres / used:.0%}, conductor {conductor / used:.0%}")


def _due_done(conn: object) -> int:
    return conn.execute(text("SELECT count(*) FROM duetouchpoint WHERE status != 'pending'")).scalar()  # type: ignore[attr-defined]


def _time_report(runtime: Runtime, days: int) -> tuple[float, int]:
    """Seconds to build and store the review report of the import's day (the busiest: every welcome and first
    question), as the pump makes it the morning after; and how many sends that day had."""
    settings = runtime.deps.settings
    ctx = daily.context(settings, runtime.deps.engine, runtime.deps.library)
    day = runtime.deps.shop.local_date(START)
    now = START + timedelta(days=min(days, 2))
    t = time.perf_counter()
    report = daily.generate(ctx, day, now)
    return time.perf_counter() - t, report.metrics.sends.total


def run(admin: str, customers: int, workers: int, days: int, home: Path,
        profile_dir: Path | None = None) -> dict[str, object]:
    name = f"sopagent_scale_{workers}w_{os.getpid()}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    if home.exists():
        shutil.rmtree(home)
    # the daily review report is a once-a-day job: with days compressed into seconds it would weigh on the due phase
    # as if it ran every few seconds (a third of PostgreSQL's time at 20k customers), so the pumps skip it and one
    # day's report is timed on its own after the run (``_time_report``)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOPAGENT_DATABASE_URL": url, "SOPAGENT_WORKER_BATCH": "2000",
           "SOPAGENT_REPORT_ENABLED": "false"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        os.environ["SOPAGENT_DATABASE_URL"] = url
        runtime = Runtime.build(Settings(home=home, embedder="hash"), clock=SimClock(START))
        engine = runtime.deps.engine
        t_seed = time.perf_counter()
        rows = [{"key": f"add-{i}", "customer_id": f"c{i:07d}", "kind": "customer_added",
                 "payload": {"name": f"客户{i}"}, "received_at": START, "status": "pending"} for i in range(customers)]
        with engine.begin() as conn:
            for start in range(0, len(rows), 20_000):
                conn.execute(InboundEvent.__table__.insert(), rows[start:start + 20_000])
        del rows
        seed_s = time.perf_counter() - t_seed
        def profiled(i: int) -> list[str]:
            return [] if profile_dir is None else ["-m", "cProfile", "-o", str(profile_dir / f"{workers}w-{i}.prof")]

        procs = [subprocess.Popen([sys.executable, *profiled(i), "-m", "api.simulation", "follow", str(home),
                                   START.isoformat()],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for i in range(workers)]
        wait_for_followers(runtime, workers)  # their start-up is not enrolment time
        meter = CpuMeter([p.pid for p in procs])
        meter.start()
        t0 = time.perf_counter()
        conduct(runtime, START + ENROLLED, patience=PATIENCE)
        enrol_s = time.perf_counter() - t0
        enrol_cpu = meter.stop()
        with engine.connect() as conn:
            enrolled = conn.execute(text("SELECT count(*) FROM soprun WHERE sop_id = 'new_customer_nurture'")).scalar()
            due_before = _due_done(conn)
            sent_before = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'sent'")).scalar()
        meter.start()
        t1 = time.perf_counter()
        conduct(runtime, START + timedelta(days=days), patience=PATIENCE)
        run_s = time.perf_counter() - t1
        due_cpu = meter.stop()
        stop_followers(runtime)
        for proc in procs:
            proc.wait(timeout=600)
        with engine.connect() as conn:
            due = _due_done(conn) - due_before
            sent = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'sent'")).scalar()
            pending_due = conn.execute(text("SELECT count(*) FROM duetouchpoint WHERE status = 'pending' AND "
                                            "due_at <= :t"), {"t": START + timedelta(days=days)}).scalar()
            pending_out = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending' AND not_before <= :t"),
                                       {"t": START + timedelta(days=days)}).scalar()
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        report_s, report_sends = _time_report(runtime, days)
        sandbox = sqlite3.connect(home / "sandbox.sqlite")
        records, repeats = sandbox.execute("SELECT count(*), coalesce(sum(attempts > 1), 0) FROM sandbox_record "
                                           "WHERE customer_id != '__operators__'").fetchone()
        per_customer = dict(sandbox.execute(
            "SELECT n, count(*) FROM (SELECT customer_id, count(*) n FROM sandbox_record "
            "WHERE key LIKE 'new_customer_nurture/%' AND action != 'tag' GROUP BY customer_id) GROUP BY n"))
        sandbox.close()
        complete = days >= 31
        exactly_once = (repeats == 0 and records == sent and pending_out == 0 and pending_due == 0
                        and (not complete or per_customer == {9: customers}))
        return {"workers": workers, "customers": customers, "seed_s": seed_s, "enrol_s": enrol_s,
                "enrolled": enrolled, "due": due, "sent": sent - sent_before, "run_s": run_s, "db_mib": size / 2**20,
                "exactly_once": exactly_once, "records": records, "repeats": repeats, "per_customer": per_customer,
                "enrol_cpu": enrol_cpu, "due_cpu": due_cpu, "report_s": report_s, "report_sends": report_sends}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        os.environ.pop("SOPAGENT_DATABASE_URL", None)
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def report(r: dict[str, object]) -> None:
    print(f"  enrolment:    {r['enrolled']:,} runs in {r['enrol_s']:.1f}s "
          f"({r['enrolled'] / r['enrol_s']:,.0f} enrolments/s, added → welcome and first question sent)")
    print(f"                cpu: {r['enrol_cpu']}")
    print(f"  due actions:  {r['due']:,} in {r['run_s']:.1f}s ({r['due'] / r['run_s']:,.0f}/s); "
          f"outbox sent {r['sent']:,} ({r['sent'] / r['run_s']:,.0f}/s)")
    print(f"                cpu: {r['due_cpu']}")
    print(f"  daily report: {r['report_s']:.1f}s to build the import day's ({r['report_sends']:,} sends; the pumps "
          "skip it during the run)")
    print(f"  database:     {r['db_mib']:,.0f} MiB after the run; import of the contacts {r['seed_s']:.1f}s")
    print(f"  exactly once: {'OK' if r['exactly_once'] else 'FAILED'} (records {r['records']:,}, repeated keys "
          f"{r['repeats']}, nurture messages per customer {r['per_customer']})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", required=True, help="SQLAlchemy URL of a server and a role that may create "
                                                          "databases")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--days", type=int, default=31, help="simulated days after the import (31: the whole SOP)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration; the median is printed")
    parser.add_argument("--home", type=Path, default=Path("/tmp/sopagent-scale"))
    parser.add_argument("--profile", type=Path, default=None,
                        help="write each worker's cProfile statistics into this directory (slows them down)")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"{args.customers:,} customers on PostgreSQL, {args.days} simulated days, cores: {os.cpu_count()}")
    failed = False
    for workers in (int(w) for w in args.workers.split(",")):
        runs = []
        for attempt in range(1, args.repeat + 1):
            r = run(args.postgres, args.customers, workers, args.days, args.home, args.profile)
            print(f"--- {workers} worker process(es)" + (f", run {attempt} of {args.repeat}" if args.repeat > 1 else ""))
            report(r)
            runs.append(r)
            failed |= not r["exactly_once"]
        if args.repeat > 1:
            enrol = statistics.median(float(r["enrolled"]) / float(r["enrol_s"]) for r in runs)  # type: ignore[arg-type]
            due = statistics.median(float(r["due"]) / float(r["run_s"]) for r in runs)  # type: ignore[arg-type]
            print(f"=== {workers} worker process(es), median of {args.repeat}: {enrol:,.0f} enrolments/s, "
                  f"{due:,.0f} due actions/s; exactly once {'OK' if all(r['exactly_once'] for r in runs) else 'FAILED'}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
