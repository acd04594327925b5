"""A worker process for the crash test: seeds customers once, then advances a persisted simulated clock.

Run as ``python -m tests.sop_graphs.crash_worker HOME CUSTOMERS DAYS``; safe to kill and rerun.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.inbound import submit
from agent.runtime import Runtime
from knowledge.clock import SimClock
from knowledge.settings import Settings

START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
ANSWERS = ("1", "补水", "300")


def seed(runtime: Runtime, customers: int) -> None:
    """Customer additions and replies, stored as inbound events (idempotent by key)."""
    deps = runtime.deps
    for i in range(customers):
        added = START + timedelta(minutes=7 * i)
        submit(deps, key=f"add-{i}", customer_id=f"c{i}", kind="customer_added", payload={"name": f"客户{i}"},
               at=added)
        if i % 3 == 0:
            for n, text in enumerate(ANSWERS):
                submit(deps, key=f"ans-{i}-{n}", customer_id=f"c{i}", kind="message", payload={"text": text},
                       at=added + timedelta(minutes=2 + n))
        if i % 5 == 0:
            submit(deps, key=f"buy-{i}", customer_id=f"c{i}", kind="order",
                   payload={"event": "paid", "order_id": f"o{i}"}, at=added + timedelta(days=4))
        if i % 7 == 0:
            submit(deps, key=f"unsub-{i}", customer_id=f"c{i}", kind="message", payload={"text": "退订"},
                   at=added + timedelta(days=2, hours=3))


def main(home: str, customers: int, days: int) -> None:
    settings = Settings(home=Path(home), embedder="hash")
    probe = SimClock(START)
    runtime = Runtime.build(settings, clock=probe)
    saved = runtime.saved_clock("crash")
    if saved is not None:
        probe.set(saved)
    else:
        seed(runtime, customers)
    runtime.run_until(START + timedelta(days=days), persist_as="crash")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
