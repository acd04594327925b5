"""How long the daily review report takes for a shop of N customers.

Writes 60 days of a shop's history straight into a fresh SQLite database (customers, SOP runs, sends, questions and
answers, deferrals, conversations with unanswered questions, orders, coupons, handoff tasks, group check-ins —
at the rates a busy private-domain shop sees), then builds the report of the last day twice: cold (14 days of
metrics computed) and warm (the 13 earlier days kept). Prints both, and the rows behind them.

    python bench/report.py --customers 10000 [--embedder hash|e5]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

import api.tables  # noqa: F401  (registers the report tables)
from agent.runtime import load_valid_library
from agent.tables import InboundEvent, Message
from api.report.build import ReportContext, build
from api.report.goals import load_goals
from api.tables import DailyMetrics
from knowledge.db import init_db, make_engine
from knowledge.embeddings import E5Embedder, HashingEmbedder
from knowledge.settings import Settings
from knowledge.tables import Customer, TimelineEntry
from sop_graphs.tables import CouponLedger, EmployeeTask, Outbox, SopRun

DAYS = 60
REPORT_DAY = date(2026, 11, 30)
CHANNELS = ["live_qr", "store_qr", "ad_xhs", "miniprogram", None]
OWNERS = ["xiaohe", "meimei", "ajie", "lili"]
UNANSWERED = ["发票怎么开", "能开专票吗", "开发票要提供什么", "门店在哪里", "线下有实体店吗", "能寄到香港吗",
              "海外可以发货吗", "可以开增值税发票吗", "有没有线下专柜", "支持分期付款吗", "能用花呗分期吗",
              "包装可以送人吗", "能写贺卡吗", "什么时候有直播", "积分怎么兑换", "会员等级怎么升"]
ANSWERED = ["面霜多少钱", "油皮用哪个好", "我的快递到哪了", "孕妇能用吗", "有优惠吗", "怎么退货"]
STEPS = [("welcome", "message"), ("q_skin", "ask"), ("q_concern", "ask"), ("q_budget", "ask"), ("invite", "group_invite"),
         ("coupon", "coupon"), ("d1_content", "message"), ("d3_content", "message")]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def generate(engine: Any, customers: int, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    first = REPORT_DAY - timedelta(days=DAYS - 1)
    rows: dict[Any, list[dict[str, Any]]] = {t: [] for t in (Customer, SopRun, Outbox, TimelineEntry, Message,
                                                            InboundEvent, EmployeeTask, CouponLedger)}
    counter = iter(range(10**9))
    added: list[tuple[str, date]] = []
    for i in range(customers):
        day = first + timedelta(days=rng.randrange(DAYS))
        cid = f"c{i:07d}"
        added.append((cid, day))
        rows[Customer].append({"id": cid, "name": "客户", "owner": rng.choice(OWNERS), "channel_code": rng.choice(CHANNELS),
                               "added_at": local(day, rng.randrange(8, 23), rng.randrange(60)), "stage": "active",
                               "attributes": {}, "unsubscribed_at": local(day, 22) if rng.random() < 0.003 else None})
        run = f"r{i}"
        started = local(day, 9, rng.randrange(60))
        rows[SopRun].append({"id": run, "sop_id": "new_customer_nurture", "sop_version": 2 if day >= REPORT_DAY -
                             timedelta(days=5) else 1, "family": "nurture", "customer_id": cid,
                             "status": "completed" if rng.random() < 0.6 else "exited", "started_at": started,
                             "ended_at": started + timedelta(days=3), "exit_reason": "purchased",
                             "current_step": "d3_content"})
        reach = rng.randint(2, len(STEPS))
        for n, (step, kind) in enumerate(STEPS[:reach]):
            at = started + timedelta(hours=n * 5)
            status = "sent" if rng.random() < 0.93 else "cancelled"
            rows[Outbox].append({"key": f"{run}/{step}", "action": kind if kind != "message" else "message",
                                 "customer_id": cid, "run_id": run, "sop_id": "new_customer_nurture", "step_id": step,
                                 "mode": rng.choice(["kf", "member_task", "welcome"]), "touchpoint": "private",
                                 "executor": "ai", "marketing": n > 4, "payload": {"text": "x"}, "status": status,
                                 "not_before": at, "created_at": at, "sent_at": at if status == "sent" else None})
            if status == "cancelled":
                rows[TimelineEntry].append({"customer_id": cid, "at": at, "kind": "cancelled", "run_id": run,
                                            "key": f"cancel/{run}/{step}", "summary": "取消（daily cap of 1 reached）",
                                            "detail": {}})
            elif rng.random() < 0.1:
                rows[TimelineEntry].append({"customer_id": cid, "at": at, "kind": "deferred", "run_id": run,
                                            "key": f"defer/{run}/{step}", "summary": "推迟",
                                            "detail": {"reason": rng.choice(["daily cap of 1 reached", "quiet hours"])}})
            if kind == "ask" and status == "sent" and rng.random() < 0.55:
                rows[TimelineEntry].append({"customer_id": cid, "at": at + timedelta(minutes=20), "kind": "answer",
                                            "run_id": run, "key": f"{run}/{step}/1/answer", "summary": "回答",
                                            "detail": {}})
        if rng.random() < 0.5:
            rows[CouponLedger].append({"customer_id": cid, "campaign_id": "welcome_10", "code": f"W{i}",
                                       "issued_at": started + timedelta(hours=25)})
        if rng.random() < 0.3:
            rows[InboundEvent].append({"key": f"join/{cid}", "customer_id": cid, "kind": "behaviour",
                                       "payload": {"event": "group_joined", "group": "vip_group"},
                                       "received_at": started + timedelta(hours=26), "status": "done"})
    in_group = [(cid, d) for cid, d in added if rng.random() < 0.3]
    for offset in range(DAYS):
        day = first + timedelta(days=offset)
        known = [cid for cid, d in added if d <= day]
        for cid in rng.sample(known, min(len(known), max(1, int(customers * 0.03)))):  # customers who chat
            for _ in range(2):
                n = next(counter)
                at = local(day, rng.randrange(9, 23), rng.randrange(60))
                unanswered = rng.random() < 0.15
                text = rng.choice(UNANSWERED if unanswered else ANSWERED)
                rows[Message].append({"key": f"in/m{n}", "customer_id": cid, "direction": "in", "text": text, "at": at,
                                      "meta": {}})
                rows[Message].append({"key": f"out/m{n}", "customer_id": cid, "direction": "out", "text": "回复",
                                      "at": at + timedelta(seconds=3),
                                      "meta": {"intent": "other" if unanswered else "price", "grounded": not unanswered,
                                               "confidence": 0.4 if unanswered else 0.9, "brain": "offline"}})
        for cid in rng.sample(known, min(len(known), max(1, int(customers * 0.006)))):  # orders
            coupon = f"W{int(cid[1:])}" if rng.random() < 0.3 else None
            rows[InboundEvent].append({"key": f"order/{cid}/{offset}", "customer_id": cid, "kind": "order",
                                       "payload": {"event": "paid", "order_id": f"o{cid}{offset}",
                                                   "amount": rng.choice([99, 168, 229, 329]), "coupon": coupon},
                                       "received_at": local(day, rng.randrange(10, 23)), "status": "done"})
            rows[Outbox].append({"key": f"touch/{cid}/{offset}", "action": "message", "customer_id": cid,
                                 "run_id": None, "sop_id": "repurchase_care", "step_id": "d7", "mode": "member_task",
                                 "touchpoint": "private", "executor": "ai", "marketing": True, "payload": {},
                                 "status": "sent", "not_before": local(day, 9), "created_at": local(day, 9),
                                 "sent_at": local(day, 9)})
        for cid in rng.sample(known, min(len(known), max(1, int(customers * 0.002)))):  # handoffs
            created = local(day, rng.randrange(9, 22), rng.randrange(60))
            late = rng.random() < 0.2
            rows[EmployeeTask].append({"key": f"handoff/{cid}/{offset}", "customer_id": cid, "assignee": "advisor",
                                       "kind": "handoff", "title": "投诉", "content": {},
                                       "due_at": created + timedelta(minutes=30), "status": "done",
                                       "created_at": created,
                                       "done_at": created + timedelta(minutes=rng.randrange(40, 300) if late
                                                                      else rng.randrange(1, 10))})
        rate = 0.2 if day == REPORT_DAY else 0.35
        for cid, joined in in_group:
            if joined <= day and rng.random() < rate:
                rows[InboundEvent].append({"key": f"checkin/{cid}/{offset}", "customer_id": cid, "kind": "behaviour",
                                           "payload": {"event": "group_checkin", "group": "vip_group"},
                                           "received_at": local(day, 20, rng.randrange(60)), "status": "done"})
    with engine.begin() as conn:
        for table, batch in rows.items():
            for i in range(0, len(batch), 5000):
                conn.execute(table.__table__.insert(), batch[i:i + 5000])
    return {table.__name__: len(batch) for table, batch in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--embedder", choices=["hash", "e5"], default="e5")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sopagent-report-bench-"))
    settings = Settings(home=home, embedder=args.embedder)
    engine = make_engine(settings.db_url)
    init_db(engine)
    began = time.perf_counter()
    counts = generate(engine, args.customers)
    print(f"{args.customers:,} customers, {DAYS} days written in {time.perf_counter() - began:.1f} s: "
          + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    library = load_valid_library(settings.library_path)
    embedder = E5Embedder() if args.embedder == "e5" else HashingEmbedder()
    embedder.queries(["预热"])
    ctx = ReportContext(engine=engine, library=library, goals=load_goals(settings.library_path),
                        timezone=settings.shop_timezone, embedder=embedder)
    now = local(REPORT_DAY + timedelta(days=2), 8, 30)
    for label in ("cold (14 days of metrics computed)", "warm (earlier days kept)"):
        began = time.perf_counter()
        report = build(ctx, REPORT_DAY, now)
        elapsed = time.perf_counter() - began
        print(f"report of {REPORT_DAY}, {label}: {elapsed:.2f} s — {len(report.goals)} goals "
              f"({sum(g.status == 'missed' for g in report.goals)} missed), {len(report.anomalies)} anomalies, "
              f"{len(report.flagged)} flagged, {len(report.gaps)} gaps, {len(report.suggestions)} suggestions")
    with engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(DailyMetrics)).scalar()
    print(f"days of metrics kept: {kept}; embedder {args.embedder}")


if __name__ == "__main__":
    main()
