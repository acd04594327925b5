"""A served shop for the console's browser tests: a few days of a busy shop played through the real pipeline
(api/report/demo_data.py), its daily report, 10,000 more customers, and operator accounts."""

from __future__ import annotations

import random
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import uvicorn
from sqlalchemy import insert

from api import people
from api.app import create_app
from api.report import daily
from api.report.demo_data import play
from api.service import Service
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag

TOKEN = "console-test-token"
ADMIN, ADMIN_PASSWORD = "admin", "admin-pass-123"
ADVISOR, ADVISOR_PASSWORD = "xiaohe", "advisor-pass-123"
START = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)  # 2026-11-23 00:00 in Shanghai
DAYS = 5
EXTRA_CUSTOMERS = 10_000
_NAMES = ["小林", "阿杰", "王姐", "小美", "陈先生", "Lily", "冯姐", "欢欢", "小周", "阿青", "豆豆", "糖糖"]
_TAGS = ["油皮", "干皮", "敏感肌", "小红书", "直播间", "高意向", "已购", "社群成员"]


@dataclass
class ServedShop:
    url: str
    service: Service
    report_day: date
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.service.stop()


def _many_customers(service: Service, n: int, at: datetime) -> None:
    rng = random.Random(5)
    rows, tags = [], []
    for i in range(n):
        cid = f"bulk{i:05d}"
        rows.append({"id": cid, "name": f"{rng.choice(_NAMES)}{i}", "owner": "顾问小禾", "stage": rng.choice(
            ["new", "active", "customer", "silent"]), "channel_code": rng.choice(["xhs", "live_qr", None]),
            "added_at": at - timedelta(days=30, minutes=i), "attributes": {}})
        tags += [{"customer_id": cid, "tag": t, "source": "import/bulk", "created_at": at}
                 for t in rng.sample(_TAGS, 2)]
    with service.runtime.deps.engine.begin() as conn:
        conn.execute(insert(Customer.__table__), rows)
        conn.execute(insert(CustomerTag.__table__), tags)


def build_shop(home: Path) -> tuple[Service, date]:
    settings = Settings(home=home, embedder="hash", burst_window_seconds=0, channel="sandbox", operator_token=TOKEN)
    service = Service.build(settings, clock=SimClock(START))
    played = play(service.runtime, days=DAYS, customers=90, start=START, dip_day=DAYS, edit_day=0)
    deps = service.runtime.deps
    day = deps.shop.local_date(played.end - timedelta(seconds=1))
    daily.generate(daily.context(settings, deps.engine, deps.library), day, played.end)
    _many_customers(service, EXTRA_CUSTOMERS, played.end)
    service.clock.set(played.end + timedelta(hours=10))  # the next morning, 10:00 in the shop: office hours
    now = service.clock.now()
    people.create(deps.engine, ADMIN, ADMIN_PASSWORD, "admin", at=now, display_name="店长")
    people.create(deps.engine, ADVISOR, ADVISOR_PASSWORD, "advisor", at=now, display_name="顾问小禾")
    return service, day


def serve(service: Service, day: date) -> ServedShop:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service, run_pump=False), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # wait for the condition, not for a time
        if not thread.is_alive():
            raise RuntimeError("the console test server did not start")
        threading.Event().wait(0.05)
    return ServedShop(f"http://127.0.0.1:{port}", service, day, server, thread)
