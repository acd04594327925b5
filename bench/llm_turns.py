"""Turn throughput with a slow model: a fake OpenAI-compatible endpoint that answers each call in 2 s.

Each of N customers sends one message at the same moment; the pump prefetches the model calls of up to
``--concurrency`` customers at once (agent/prefetch.py) and writes each turn in its own short transaction.
Prints turns/s and checks exactly once (one reply per message, no repeated outbox key) and that the model
never ran inside a write transaction (an outside writer probes the database during every call).

    python bench/llm_turns.py [--customers 200] [--concurrency 128] [--delay 2]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, text
from tenacity import wait_none

from agent.inbound import submit
from agent.llm_brain import LLMBrain
from agent.runtime import Runtime, load_valid_library
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer
from sop_graphs.tables import Outbox

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the fake model takes per call")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sopagent-llm-turns-"))
    locked: list[str] = []
    waits: list[float] = []
    calls = Counter()
    lock = threading.Lock()
    database: list[Path] = []
    engines: list = []
    local: list[float] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        time.sleep(args.delay)
        if database:  # other writers during every model call: how long they wait for the database
            if len(waits) % 2:  # another process (``sopagent worker`` beside ``serve --no-worker``)
                began = time.perf_counter()
                try:
                    with sqlite3.connect(database[0], timeout=5.0) as db:
                        db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    with lock:
                        locked.append(str(exc))
                with lock:
                    waits.append(time.perf_counter() - began)
            else:  # an operator action in the serving process (the engine's write gate queues it)
                began = time.perf_counter()
                with engines[0].begin() as conn:
                    conn.execute(text("UPDATE workerstate SET value = value WHERE name = 'bench'"))
                with lock:
                    waits.append(time.perf_counter() - began)
                    local.append(waits[-1])
        with lock:
            calls["understand" if body.get("tools") else "reply"] += 1
        if body.get("tools"):
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function", "function": {
                    "name": body["tools"][0]["function"]["name"],
                    "arguments": json.dumps({"intent": "greeting", "confidence": 0.9})}}]}
        else:
            message = {"role": "assistant", "content": "您好呀～在的，有什么可以帮您？"}
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                         "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    settings = Settings(home=home, embedder="hash", burst_window_seconds=0, brain="llm",
                        openai_base_url="http://fake-llm/v1", openai_api_key="sk-bench",
                        turn_concurrency=args.concurrency, llm_timeout_seconds=30)
    library = load_valid_library(settings.library_path)
    client = httpx.Client(transport=httpx.MockTransport(endpoint),
                          limits=httpx.Limits(max_connections=args.concurrency * 2))
    brain = LLMBrain(settings, http_client=client, wait=wait_none(), catalog=library.catalog)
    runtime = Runtime.build(settings, clock=SimClock(START), library=library, brain=brain)
    runtime.load_demo_shop()
    ids = [f"c{i:05d}" for i in range(args.customers)]
    with runtime.deps.engine.begin() as conn:
        conn.execute(Customer.__table__.insert(), [{"id": cid, "name": "客人", "added_at": START, "stage": "active",
                                                    "attributes": {}} for cid in ids])
    engines.append(runtime.deps.engine)
    database.append(Path(runtime.deps.engine.url.database or ""))
    runtime.conversation.router.classifier  # noqa: B018 - trained before the clock starts
    for cid in ids:
        submit(runtime.deps, key=f"m/{cid}", customer_id=cid, kind="message", payload={"text": "在吗 想问问"},
               at=START)
    started = time.perf_counter()
    runtime.run_until(START + timedelta(seconds=5))
    elapsed = time.perf_counter() - started
    with runtime.deps.engine.connect() as conn:
        keys = list(conn.execute(select(Outbox.key).where(Outbox.action == "message",
                                                          Outbox.key.like("reply/%"))).scalars())
    replied = {k.split("/")[2] for k in keys}
    print(f"customers {args.customers}, model {args.delay:g} s per call, 2 calls per turn, "
          f"prefetch concurrency {args.concurrency}")
    print(f"turns: {len(keys)} in {elapsed:.1f} s = {len(keys) / elapsed:.1f} turns/s "
          f"(model calls: {calls['understand']} understand + {calls['reply']} reply)")
    print(f"exactly once: {len(keys) == len(set(keys)) == args.customers and len(replied) == args.customers} "
          f"(replies {len(keys)}, distinct {len(set(keys))}, customers answered {len(replied)})")
    outside = sorted(set(waits) - set(local))
    local.sort()
    print(f"writes in this process during model calls: {len(local)}; wait p50 {local[len(local) // 2] * 1000:.0f} ms, "
          f"max {local[-1] * 1000:.0f} ms (queued first come, first served with the pump's turns)")
    print(f"writes from another process during model calls: {len(outside)}, refused after 5 s: {len(locked)}; wait "
          f"p50 {outside[len(outside) // 2] * 1000:.0f} ms, max {outside[-1] * 1000:.0f} ms (no lock is held across a "
          f"call; SQLite's busy handler polls)")


if __name__ == "__main__":
    main()
