"""Callback benchmark: encrypted WeCom callbacks over loopback against ``sopagent serve``'s app.

Three processes, as in a single-node deployment: the HTTP server (uvicorn, no pump), the worker pump
(kf sync → offline brain → kf/send_msg against the in-memory fake WeCom API), and this load generator.
Half the callbacks are kf_msg_or_event (each reveals one new customer message to kf/sync_msg), half
are app text messages; a share is re-sent to check dedupe. Prints sustained callbacks/s, ack p50/p99,
end-to-end reply latency (callback sent → kf/send_msg received by the fake), and exactly-once checks.

Usage: python bench/callbacks.py [--rate 600] [--seconds 20] [--home /tmp/sopagent-cb]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

CORP, TOKEN, AES = "wwbench0000000001", "benchtoken", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
KF = "wkBENCH"
TEXTS = ["你好", "玻尿酸水润保湿面霜多少钱", "我的订单到哪了", "有什么活动吗", "敏感肌适合用什么"]


def settings(home: Path, embedder: str, burst: float) -> Any:
    from knowledge.settings import Settings

    return Settings(home=home, embedder=embedder, burst_window_seconds=burst, wecom_corp_id=CORP,
                    wecom_token=TOKEN, wecom_aes_key=AES, wecom_secret="bench", wecom_api_base="http://fake.wecom",
                    operator_token="bench", serve_worker=False, callback_max_skew_seconds=3600)


def serve(home: Path, embedder: str, burst: float, port: int) -> None:
    import logging

    import uvicorn

    from api.app import create_app
    from api.service import Service

    logging.disable(logging.WARNING)
    service = Service.build(settings(home, embedder, burst))
    uvicorn.run(create_app(service, run_pump=False), host="127.0.0.1", port=port, log_level="error",
                access_log=False)


def pump(home: Path, embedder: str, burst: float, total_kf: int, out: Path, stop_file: Path) -> None:
    import logging

    from api.service import Service
    from api.wecom.fake import FakeWeCom

    logging.disable(logging.WARNING)
    fake = FakeWeCom(reveal=lambda token: int(token.split("-")[1]) + 1 if token.startswith("T-") else 0)
    for i in range(total_kf):
        fake.add_kf_message(KF, {"msgid": f"m{i}", "open_kfid": KF, "external_userid": f"wmC{i:06d}",
                                 "send_time": None, "origin": 3, "msgtype": "text",
                                 "text": {"content": TEXTS[i % len(TEXTS)]}})
    service = Service.build(settings(home, embedder, burst), wecom_transport=fake.transport())
    service.runtime.load_demo_shop()
    (out.parent / "pump.ready").write_text("ok")
    idle_since = None
    while True:
        handled = service.pump_once()
        if handled:
            idle_since = None
        elif stop_file.exists():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > burst + 3:
                break
        if not handled:
            time.sleep(0.005)
    replies = [(body["touser"], body["msgid"], stamp) for (path, body), stamp in zip(fake.calls, fake.stamps,
                                                                                     strict=True)
               if path == "/cgi-bin/kf/send_msg"]
    out.write_text(json.dumps(replies))
    service.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_callbacks(n: int) -> list[tuple[str, dict[str, str], bytes]]:
    from api.wecom.crypto import WeComCrypto, signature

    crypto = WeComCrypto(TOKEN, AES, CORP)
    out = []
    ts = str(int(time.time()))
    for i in range(n):
        if i % 2 == 0:
            kind = f"kf{i // 2}"
            xml = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><CreateTime>{ts}</CreateTime>"
                   f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
                   f"<Token><![CDATA[T-{i // 2}]]></Token><OpenKfId><![CDATA[{KF}]]></OpenKfId></xml>")
        else:
            kind = "text"
            xml = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[emp{i % 50}]]>"
                   f"</FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                   f"<Content><![CDATA[收到 {i}]]></Content><MsgId>{10_000_000 + i}</MsgId><AgentID>1</AgentID></xml>")
        encrypted = crypto.encrypt(xml)
        nonce = str(i)
        query = {"msg_signature": signature(TOKEN, ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
        out.append((kind, query, f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()))
    return out


def http_request(port: int, query: dict[str, str], body: bytes) -> bytes:
    path = "/wecom/callback?" + urlencode(query)
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def load(port: int, callbacks: list[tuple[str, dict[str, str], bytes]], rate: float,
               duplicates: int, connections: int = 32) -> tuple[list[float], dict[str, float], float, int]:
    """Open-loop load at ``rate`` over keep-alive connections; raw HTTP/1.1 so the generator stays cheap."""
    acks: list[float] = []
    sent_at: dict[str, float] = {}
    failures = 0
    schedule = callbacks + callbacks[:duplicates]  # WeCom-style retries of already-acked callbacks
    requests = [(kind, http_request(port, query, body)) for kind, query, body in schedule]
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            kind, raw = item
            started, wall = time.perf_counter(), time.time()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), b"0"))
            if length:
                await reader.readexactly(length)
            acks.append((time.perf_counter() - started) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                failures += 1
            elif kind.startswith("kf") and kind not in sent_at:
                sent_at[kind] = wall
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    t0 = time.perf_counter()
    for i, item in enumerate(requests):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(item)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return acks, sent_at, time.perf_counter() - t0, failures


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=600, help="callbacks per second offered")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--home", type=Path, default=Path("/tmp/sopagent-cb"))
    parser.add_argument("--embedder", default="e5", choices=["e5", "hash"])
    parser.add_argument("--burst", type=float, default=2.0, help="burst window (product default 2 s)")
    args = parser.parse_args()
    if args.home.exists():
        shutil.rmtree(args.home)
    args.home.mkdir(parents=True)
    total = int(args.rate * args.seconds)
    total_kf = (total + 1) // 2
    duplicates = max(total // 20, 1)
    callbacks = make_callbacks(total)
    port = free_port()
    ctx = mp.get_context("spawn")
    from api.service import Service  # create the schema once before both processes start

    Service.build(settings(args.home, "hash", args.burst)).stop()
    out, stop_file = args.home / "replies.json", args.home / "stop"
    pump_proc = ctx.Process(target=pump, args=(args.home, args.embedder, args.burst, total_kf, out, stop_file))
    pump_proc.start()
    server = ctx.Process(target=serve, args=(args.home, args.embedder, args.burst, port))
    server.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200 and (args.home / "pump.ready").exists():
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    acks, sent_at, elapsed, failures = asyncio.run(load(port, callbacks, args.rate, duplicates))
    stop_file.write_text("stop")
    pump_proc.join(timeout=1800)
    server.terminate()
    server.join()

    replies = json.loads(out.read_text())
    first_reply: dict[str, float] = {}
    for touser, _, stamp in replies:
        first_reply.setdefault(touser, stamp)
    e2e = [(first_reply[f"wmC{int(k[2:]):06d}"] - t) * 1000 for k, t in sent_at.items()
           if f"wmC{int(k[2:]):06d}" in first_reply]
    db = sqlite3.connect(args.home / "sopagent.sqlite")
    inbox = sqlite3.connect(args.home / "inbox.sqlite")
    stored, done = inbox.execute("SELECT count(*), coalesce(sum(status = 'done'), 0) FROM wecomcallback").fetchone()
    answered = db.execute("SELECT count(DISTINCT customer_id) FROM wecomdelivery WHERE key LIKE 'reply/kf/%'"
                          ).fetchone()[0]
    msgids = [m for _, m, _ in replies]
    once = stored == total and done == total and answered == total_kf and len(msgids) == len(set(msgids))
    print(f"callbacks offered:    {total + duplicates:,} ({total:,} unique + {duplicates:,} retries) at {args.rate:,.0f}/s"
          f" for {args.seconds:.0f}s; non-200: {failures}")
    print(f"sustained:            {len(acks) / elapsed:,.0f} callbacks/s acknowledged")
    print(f"ack latency:          p50 {statistics.median(acks):.1f} ms, p99 {pct(acks, 99):.1f} ms, "
          f"max {max(acks):.1f} ms")
    print(f"end-to-end reply:     p50 {statistics.median(e2e) / 1000:.2f} s, p99 {pct(e2e, 99) / 1000:.2f} s over "
          f"{len(e2e):,} kf messages (includes the {args.burst:g} s burst window and queueing behind the load)")
    print(f"exactly once:         {'OK' if once else 'FAILED'} (stored {stored:,}/{total:,} unique, processed {done:,},"
          f" customers answered {answered:,}/{total_kf:,}, kf msgids repeated {len(msgids) - len(set(msgids))})")
    print(f"machine:              {os.cpu_count()} cores; server, pump and load generator are separate processes")


if __name__ == "__main__":
    main()
