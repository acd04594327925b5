"""Kill the worker with SIGKILL at random points of a multi-day run; every action happens exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

CUSTOMERS, DAYS = 240, 9
ROOT = Path(__file__).resolve().parents[2]


def _run(home: Path, *, kill_after: float | None, database_url: str | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if database_url:
        env["SOPAGENT_DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "tests.sop_graphs.crash_worker", str(home), str(CUSTOMERS),
                             str(DAYS)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        return 0
    # kill only after this run has delivered something (a loaded machine may take seconds to start), then
    # at a random moment shortly after: every restart makes progress, whatever the machine's speed
    baseline = _delivered(home)
    while proc.poll() is None and _delivered(home) <= baseline:
        time.sleep(0.05)
    try:
        proc.wait(timeout=kill_after)
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        return 0
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return 1


def _delivered(home: Path) -> int:
    """Sandbox deliveries so far (0 before the worker created its store)."""
    path = home / "sandbox.sqlite"
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM sandbox_record").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _actions(home: Path) -> tuple[Counter, int]:
    """Logical actions delivered (customer, run, step, occurrence, action) and redelivered attempts."""
    conn = sqlite3.connect(home / "sandbox.sqlite")
    rows = conn.execute("SELECT key, customer_id, action, payload, attempts FROM sandbox_record").fetchall()
    conn.close()
    logical = Counter((customer, action, key, json.loads(payload).get("text")) for key, customer, action, payload, _
                      in rows)
    return logical, sum(attempts - 1 for *_, attempts in rows)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sigkilled_worker_restarts_without_losing_or_repeating_actions(tmp_path, request, store):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    urls = (None, None) if store == "sqlite" else (request.getfixturevalue("postgres_database")(),
                                                    request.getfixturevalue("postgres_database")())
    _run(reference, kill_after=None, database_url=urls[0])
    rng = random.Random(20261122)
    kills = 0
    started = time.monotonic()
    while _run(crashed, kill_after=rng.uniform(0.2, 1.5), database_url=urls[1]):
        kills += 1
        assert time.monotonic() - started < 900, "the crashed run never finished"
    expected, _ = _actions(reference)
    got, redelivered = _actions(crashed)
    assert kills >= 3, "the run finished before it could be killed enough times; raise CUSTOMERS or DAYS"
    assert sum(expected.values()) > CUSTOMERS * 3
    missing, extra = expected - got, got - expected
    assert not missing and not extra, f"missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}"
    assert max(got.values()) == 1
    print(f"kills={kills} actions={sum(got.values())} redelivered_attempts={redelivered}")
