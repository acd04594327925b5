"""Several worker processes on one PostgreSQL: together they do exactly what one worker does — every action once,
each customer's actions at the same moments and in the same order — while workers are SIGKILLed and restarted."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest

from agent.runtime import Runtime
from api.report.daily import OPERATORS
from api.simulation import conduct, stop_followers
from knowledge.clock import SimClock
from knowledge.settings import Settings
from tests.sop_graphs import crash_worker

CUSTOMERS, DAYS, WORKERS = 150, 4, 3

ROOT = Path(__file__).resolve().parents[2]


def _follower(home: Path, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOPAGENT_DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "api.simulation", "follow", str(home),
                             crash_worker.START.isoformat()], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _timelines(home: Path) -> dict[str, list[tuple[str, str, str, str]]]:
    """Each customer's deliveries in time order: (at, action, key, text)."""
    conn = sqlite3.connect(home / "sandbox.sqlite")
    rows = conn.execute("SELECT key, customer_id, action, at, payload FROM sandbox_record").fetchall()
    conn.close()
    timelines: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for key, customer, action, at, payload in rows:
        timelines[customer].append((at, action, key, str(json.loads(payload).get("text"))))
    return {customer: sorted(events) for customer, events in timelines.items()}


def _redelivered(home: Path) -> int:
    conn = sqlite3.connect(home / "sandbox.sqlite")
    try:
        return conn.execute("SELECT count(*) FROM sandbox_record WHERE attempts > 1").fetchone()[0]
    finally:
        conn.close()


def _reference(home: Path) -> dict[str, list[tuple[str, str, str, str]]]:
    """One worker, no crash: what the several must reproduce."""
    runtime = Runtime.build(Settings(home=home, embedder="hash"), clock=SimClock(crash_worker.START))
    crash_worker.seed(runtime, CUSTOMERS)
    runtime.run_until(crash_worker.START + timedelta(days=DAYS))
    return _timelines(home)


@pytest.mark.slow
def test_several_workers_sigkilled_at_random_do_every_action_once_in_each_customers_order(
        tmp_path, postgres_database, monkeypatch) -> None:
    expected = _reference(tmp_path / "reference")
    url, home = postgres_database(), tmp_path / "several"
    monkeypatch.setenv("SOPAGENT_DATABASE_URL", url)
    runtime = Runtime.build(Settings(home=home, embedder="hash"), clock=SimClock(crash_worker.START))
    assert runtime.deps.engine.dialect.name == "postgresql"
    crash_worker.seed(runtime, CUSTOMERS)
    workers = [_follower(home, url) for _ in range(WORKERS)]
    kills, done = 0, threading.Event()
    rng = random.Random(20261203)

    def killer() -> None:  # kill a random worker whenever the run has moved on since the last kill, restart it
        nonlocal kills
        last = -1
        while not done.is_set():
            moments = seen[0]
            if moments > last + 25:
                victim = rng.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = _follower(home, url)
                kills, last = kills + 1, moments
            done.wait(rng.uniform(0.05, 0.4))

    seen = [0]

    def moment(_: object) -> None:
        seen[0] += 1

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        conduct(runtime, crash_worker.START + timedelta(days=DAYS), on_moment=moment)
    finally:
        done.set()
        thread.join()
        stop_followers(runtime)
        for proc in workers:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    got = _timelines(home)
    reports = got.pop(OPERATORS, [])  # the daily report: a pump's chore (the reference ran no pump), made once a day
    assert len({key for _, _, key, _ in reports}) == len(reports) == DAYS - 1
    assert kills >= 3, "the run finished before workers could be killed; raise CUSTOMERS or DAYS"
    assert sum(len(t) for t in expected.values()) > CUSTOMERS * 3
    differing = [c for c in expected.keys() | got.keys() if expected.get(c) != got.get(c)]
    assert not differing, f"{len(differing)} customers differ, e.g. {differing[0]}: " \
                          f"expected {expected.get(differing[0])} got {got.get(differing[0])}"
    print(f"workers={WORKERS} kills={kills} moments={seen[0]} redelivered={_redelivered(home)}")


def test_workers_on_one_database_claim_disjoint_shards(postgres_database) -> None:
    from knowledge.db import make_engine
    from knowledge.shards import SHARDS, ShardClaims

    engine = make_engine(postgres_database())
    first, second = ShardClaims(engine), ShardClaims(engine)
    try:
        with first.claimed(5) as mine, second.claimed(5) as theirs:
            assert mine and not theirs
        with second.claimed(5) as theirs:
            assert theirs, "a released shard is free for the next worker"
        assert first.duties() and not second.duties()
        first.close()  # a worker that stops (or dies: its connection goes) frees what it held at once
        assert second.duties()
        assert sorted(second.rotation()) == list(range(SHARDS))
    finally:
        first.close()
        second.close()


def test_a_worker_whose_claim_session_died_stops_before_its_next_batch(postgres_database) -> None:
    from sqlalchemy import text

    from knowledge.db import make_engine
    from knowledge.shards import ClaimLost, ShardClaims

    engine = make_engine(postgres_database())
    claims, other = ShardClaims(engine), ShardClaims(engine)
    try:
        with claims.claimed(5) as mine:
            assert mine
            claims.check()  # alive: goes on
            pid = claims._connection().execute(text("SELECT pg_backend_pid()")).scalar()  # noqa: SLF001
            with engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(ClaimLost):
                claims.check()
            with other.claimed(5) as theirs:
                assert theirs, "the shard is free for another worker"
    finally:
        claims.close()
        other.close()


def test_a_pass_cut_short_is_continued_from_the_next_shard(postgres_database) -> None:
    from knowledge.db import make_engine
    from knowledge.shards import SHARDS, ShardClaims

    claims = ShardClaims(make_engine(postgres_database()))
    try:
        claims.worked(10)
        assert claims.rotation()[:3] == [11, 12, 13] and len(claims.rotation()) == SHARDS
        claims.worked(SHARDS - 1)
        assert claims.rotation()[0] == 0
    finally:
        claims.close()
