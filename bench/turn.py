"""Turn overhead benchmark: offline brain, N products indexed, mixed customer questions.

Prints p50/p95 per turn (inbound event stored -> understood -> facts -> reply in the outbox) and the
number of LLM calls per turn made through a counting fake LLM brain (must be <= 2).
Usage: python bench/turn.py [--turns 1000] [--products 1000] [--embedder e5|hash]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.inbound import submit
from agent.offline_brain import OfflineBrain
from agent.runtime import Runtime
from agent.understanding import Facts, Reply, TurnInput, Understanding
from bench.retrieval import generated_products
from knowledge.clock import SimClock
from knowledge.db import upsert
from knowledge.settings import Settings
from knowledge.tables import Customer, Product

QUESTIONS = ["玻尿酸面霜多少钱？", "敏感肌用什么面霜好", "我的订单到哪了", "快递什么时候到", "拆封了还能退吗",
             "买完降价了能退差价吗", "最近有什么活动", "防晒霜孕妇能用吗", "卸妆油会糊眼吗", "谢谢",
             "洁面仪防水吗", "你好", "怎么开发票", "我是干皮，预算三百左右，推荐一下", "积雪草修护霜还有货吗"]


class CountingBrain(OfflineBrain):
    """The offline brain standing in for an LLM: counts the calls a turn makes on the brain interface."""

    name = "counting"

    def __init__(self, catalog, embedder) -> None:
        super().__init__(catalog, embedder)
        self.calls = 0

    def understand(self, turn: TurnInput, vector=None, routed=None) -> Understanding:
        self.calls += 1
        return super().understand(turn, vector, routed)

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        self.calls += 1
        return super().reply(turn, understanding, facts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--embedder", choices=["e5", "hash"], default="e5")
    parser.add_argument("--home", type=Path, default=Path("/tmp/sopagent-turn"))
    args = parser.parse_args()
    for name in ("sopagent.sqlite", "checkpoints.sqlite", "sandbox.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (args.home / f"{name}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(args.home / "chroma", ignore_errors=True)
    start = datetime(2026, 11, 23, 2, tzinfo=UTC)
    settings = Settings(home=args.home, embedder=args.embedder, burst_window_seconds=0)
    runtime = Runtime.build(settings, clock=SimClock(start))
    brain = CountingBrain(runtime.deps.library.catalog, runtime.conversation.embedder)
    runtime.conversation.brain = brain
    runtime.load_demo_shop()
    with runtime.deps.engine.begin() as conn:
        upsert(conn, Product.__table__, generated_products(max(args.products - 44, 0)))
        conn.execute(Customer.__table__.insert(), [{"id": f"c_shop_{i:03d}", "name": f"客户{i}", "added_at": start,
                                                    "stage": "active", "attributes": {}} for i in range(1, 41)])
    t0 = time.perf_counter()
    runtime.conversation.retriever.sync()
    print(f"indexed products: {runtime.conversation.retriever.sync(['products'])['products']:,} "
          f"({time.perf_counter() - t0:.1f}s incl. embedding, cached by content hash)")
    times = []
    clock = runtime.deps.clock
    for i in range(args.turns):
        cid = f"c_shop_{i % 40 + 1:03d}"
        text = QUESTIONS[i % len(QUESTIONS)]
        clock.set(clock.now() + timedelta(minutes=7))
        t = time.perf_counter()
        submit(runtime.deps, key=f"t{i}", customer_id=cid, kind="message", payload={"text": text}, at=clock.now())
        runtime.inbound.process()
        times.append((time.perf_counter() - t) * 1000)
        if i % 50 == 0:
            runtime.tick()  # let SOP work and the outbox drain outside the timed turns
    times.sort()
    print(f"turns:            {args.turns:,} (embedder {runtime.conversation.embedder.name})")
    print(f"per turn:         p50 {statistics.median(times):.1f} ms  p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms"
          f"  max {times[-1]:.1f} ms")
    print(f"brain calls/turn: {brain.calls / args.turns:.2f} (LLM budget: <= 2)")


if __name__ == "__main__":
    main()
