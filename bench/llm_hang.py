"""The service with a hanging model endpoint: web chat still answered, operator actions fast, nothing lost.

Runs ``sopagent serve`` as deployed (uvicorn on loopback, the pump in-process, SQLite, the LLM brain) against a
fake OpenAI-compatible server that accepts every call and never answers. While the calls hang, web customers
chat through ``POST /chat`` (re-sending the same ``message_id`` until they have a reply, as the web widget
does) and an operator pauses and resumes an SOP, takes a conversation over and releases it, and lists
customers, over and over. Prints how long customers waited for their first reply, each operator action's
latency, messages lost and every ``database is locked`` seen in the server log.

    python bench/llm_hang.py [--customers 40] [--late 20] [--timeout 4] [--attempts 2]
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import func, select

from agent.tables import InboundEvent
from api.app import create_app
from api.service import Service
from knowledge.settings import Settings
from knowledge.tables import Customer
from sop_graphs.tables import Outbox

OPERATOR = "bench-operator"


class Hang(BaseHTTPRequestHandler):
    """Reads the request and never answers (until the bench ends)."""

    stop = threading.Event()
    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Hang.calls += 1
        Hang.stop.wait(600)

    def log_message(self, *_args: object) -> None:
        pass


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.locked: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (self.format(record) if record.exc_info else "")
        if "database is locked" in text:
            self.locked.append(text[:200])
        if record.levelno >= logging.ERROR:
            self.errors.append(text[:200])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chat_until_answered(base: str, index: int, deadline: float) -> tuple[float | None, int]:
    """One web customer: send a message, re-send it (same message_id) until a reply comes; (seconds, posts)."""
    began, posts, session = time.perf_counter(), 0, None
    message_id = uuid.uuid4().hex
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.perf_counter() < deadline:
            body = {"text": "你们家的洁面适合油皮吗", "message_id": message_id} | ({"session": session} if session else {})
            response = client.post("/chat", json=body)
            posts += 1
            if response.status_code == 200:
                data = response.json()
                session = data["session"]
                if data["replies"]:
                    return time.perf_counter() - began, posts
            time.sleep(0.2)
    return None, posts


def operate(base: str, stop: threading.Event, latencies: dict[str, list[float]], failures: list[str]) -> None:
    """An operator working while the model hangs: every action timed."""
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    actions = [("pause SOP", "post", "/api/sops/new_customer_nurture/pause", None),
               ("resume SOP", "post", "/api/sops/new_customer_nurture/resume", None),
               ("take over", "post", "/api/conversations/c_bench_op/takeover", {"by": "小禾"}),
               ("release", "post", "/api/conversations/c_bench_op/release", {"by": "小禾"}),
               ("list customers", "get", "/api/customers?limit=20", None)]
    with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
        while not stop.is_set():
            for name, method, path, body in actions:
                began = time.perf_counter()
                response = client.request(method, path, json=body)
                latencies.setdefault(name, []).append(time.perf_counter() - began)
                if response.status_code >= 400:
                    failures.append(f"{name}: {response.status_code} {response.text[:120]}")
                time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=40, help="web customers chatting while the model hangs")
    parser.add_argument("--late", type=int, default=20, help="customers who start once the circuit has opened")
    parser.add_argument("--timeout", type=float, default=4.0, help="LLM timeout per attempt (s)")
    parser.add_argument("--attempts", type=int, default=2, help="LLM attempts per call")
    args = parser.parse_args()
    recorder = Recorder()
    logging.getLogger().addHandler(recorder)

    llm_port, port = free_port(), free_port()
    llm = ThreadingHTTPServer(("127.0.0.1", llm_port), Hang)
    llm.daemon_threads = True
    threading.Thread(target=llm.serve_forever, daemon=True).start()
    home = Path(tempfile.mkdtemp(prefix="sopagent-llm-hang-"))
    settings = Settings(home=home, embedder="hash", brain="llm", openai_base_url=f"http://127.0.0.1:{llm_port}/v1",
                        openai_api_key="sk-bench", llm_timeout_seconds=args.timeout, llm_max_attempts=args.attempts,
                        llm_breaker_failures=3, llm_breaker_cooldown_seconds=600, operator_token=OPERATOR,
                        burst_window_seconds=0.5, chat_wait_seconds=3, chat_rate_per_address=10_000,
                        chat_rate_per_session=10_000)
    service = Service.build(settings)
    service.runtime.load_demo_shop()
    with service.runtime.deps.engine.begin() as conn:  # the customer the operator takes over
        conn.execute(Customer.__table__.insert().values(id="c_bench_op", name="王女士", stage="active", attributes={},
                                                        added_at=service.clock.now()))
    service.runtime.conversation.router.classifier  # noqa: B018 - trained before the clock starts
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"

    stop = threading.Event()
    latencies: dict[str, list[float]] = {}
    failures: list[str] = []
    operator = threading.Thread(target=operate, args=(base, stop, latencies, failures), daemon=True)
    operator.start()
    began = time.perf_counter()
    deadline = began + args.timeout * args.attempts * 4 + 60
    with ThreadPoolExecutor(max_workers=args.customers) as pool:
        waits = list(pool.map(lambda i: chat_until_answered(base, i, deadline), range(args.customers)))
    opened_after = time.perf_counter() - began
    with ThreadPoolExecutor(max_workers=max(args.late, 1)) as pool:
        late = list(pool.map(lambda i: chat_until_answered(base, 10_000 + i, deadline), range(args.late)))
    stop.set()
    operator.join()
    time.sleep(0.5)
    with service.runtime.deps.engine.connect() as conn:
        pending = conn.execute(select(func.count()).select_from(InboundEvent).where(
            InboundEvent.__table__.c.status == "pending", InboundEvent.__table__.c.kind == "message")).scalar()
        received = conn.execute(select(func.count()).select_from(InboundEvent).where(
            InboundEvent.__table__.c.kind == "message")).scalar()
        replies = conn.execute(select(func.count(func.distinct(Outbox.__table__.c.customer_id))).where(
            Outbox.__table__.c.key.like("reply/%"))).scalar()
    server.should_exit = True
    Hang.stop.set()
    service.stop()
    llm.shutdown()

    def summary(values: list[float]) -> str:
        values = sorted(values)
        return (f"n {len(values)}, p50 {statistics.median(values) * 1000:.0f} ms, "
                f"p95 {values[int(len(values) * 0.95) - 1 if len(values) > 1 else 0] * 1000:.0f} ms, "
                f"max {values[-1] * 1000:.0f} ms")

    answered = [w for w, _ in waits if w is not None]
    late_answered = [w for w, _ in late if w is not None]
    print(f"model endpoint hangs; timeout {args.timeout:g} s x {args.attempts} attempts, circuit opens after 3 "
          f"failures; {Hang.calls} calls reached the endpoint")
    print(f"customers chatting while it hangs: {len(answered)}/{args.customers} answered; first reply after "
          f"{summary(answered) if answered else '-'} (all answered {opened_after:.1f} s after the hang began)")
    print(f"customers arriving with the circuit open: {len(late_answered)}/{args.late} answered; "
          f"{summary(late_answered) if late_answered else '-'}")
    for name, values in latencies.items():
        print(f"operator {name}: {summary(values)}")
    print(f"operator actions failed: {len(failures)} {failures[:3]}")
    print(f"messages received {received}, still pending {pending}, customers replied to {replies} of "
          f"{args.customers + args.late}")
    print(f"'database is locked' in the log: {len(recorder.locked)}; errors logged: {len(recorder.errors)} "
          f"{recorder.errors[:2]}")


if __name__ == "__main__":
    main()
