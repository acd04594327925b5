"""The scripted 30-day demo on the embedded defaults and a simulated clock."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from agent.inbound import submit
from agent.runtime import Runtime
from knowledge.clock import SimClock, as_utc
from knowledge.db import upsert
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag, Shipment, ShopOrder, TimelineEntry
from sop_graphs.channel import SandboxChannel
from sop_graphs.tables import CouponLedger, EmployeeTask, Outbox, SopRun

START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 15:00 in Shanghai


@dataclass(frozen=True)
class Beat:
    """One scripted thing that happens: offset from START, customer, kind, payload."""

    offset: timedelta
    customer: str
    kind: str
    payload: dict[str, Any]


def _t(days: int, hhmm: str) -> timedelta:
    """Offset to local ``hhmm`` on day ``days`` (START is day 0, 15:00 local)."""
    hours, minutes = map(int, hhmm.split(":"))
    return timedelta(days=days, hours=hours - 15, minutes=minutes)


PEOPLE = {
    "wm_lin": ("小林", "喜欢抗老的敏感肌，答完问卷、读案例、第 10 天下单"),
    "wm_jie": ("阿杰", "加好友后一直沉默"),
    "wm_wang": ("王姐", "门店扫码，跳过问卷，第 5 天投诉破损"),
    "wm_mei": ("小美", "答完问卷，第 4 天说退订"),
    "wm_chen": ("陈先生", "周六深夜加好友，周末逛小程序、预约直播、进群"),
}

SCRIPT: list[Beat] = [
    Beat(_t(0, "15:00"), "wm_lin", "customer_added", {"name": "小林", "owner": "顾问小禾", "channel_code": "xhs"}),
    Beat(_t(0, "15:01"), "wm_lin", "message", {"text": "先问下，面霜多少钱？"}),
    Beat(_t(0, "15:02"), "wm_lin", "message", {"text": "4"}),
    Beat(_t(0, "15:04"), "wm_lin", "message", {"text": "想抗老，有细纹了"}),
    Beat(_t(0, "15:05"), "wm_lin", "message", {"text": "大概三百吧"}),
    Beat(_t(0, "16:00"), "wm_jie", "customer_added", {"name": "阿杰", "owner": "顾问小禾"}),
    Beat(_t(0, "17:30"), "wm_wang", "customer_added", {"name": "王姐", "owner": "门店小美", "channel_code": "store_sh01",
                                                       "tags": ["门店扫码"]}),
    Beat(_t(0, "17:40"), "wm_wang", "message", {"text": "混合皮吧"}),
    Beat(_t(0, "17:41"), "wm_wang", "message", {"text": "这个跳过"}),
    Beat(_t(0, "17:43"), "wm_wang", "message", {"text": "两百左右"}),
    Beat(_t(0, "19:00"), "wm_mei", "customer_added", {"name": "小美", "owner": "顾问小禾"}),
    Beat(_t(0, "19:01"), "wm_mei", "message", {"text": "油皮"}),
    Beat(_t(0, "19:02"), "wm_mei", "message", {"text": "控油祛痘"}),
    Beat(_t(0, "19:03"), "wm_mei", "message", {"text": "一百五"}),
    Beat(_t(2, "10:20"), "wm_lin", "behaviour", {"event": "content_read", "category": "case_study",
                                                  "title": "28天抗老案例"}),
    Beat(_t(4, "12:00"), "wm_mei", "message", {"text": "别再发了，退订"}),
    Beat(_t(5, "23:30"), "wm_chen", "customer_added", {"name": "陈先生", "owner": "顾问小禾"}),
    Beat(_t(5, "10:05"), "wm_wang", "message", {"text": "收到的面霜瓶子破损了，我要投诉！"}),
    Beat(_t(5, "10:07"), "wm_wang", "message", {"text": "订单号 XH20261120088"}),
    Beat(_t(5, "10:09"), "wm_wang", "message", {"text": "瓶口裂了，漏了一半"}),
    Beat(_t(6, "14:00"), "wm_chen", "behaviour", {"event": "miniprogram_visit", "page": "新品页"}),
    Beat(_t(6, "15:00"), "wm_chen", "behaviour", {"event": "live_booked", "live": "周四护肤专场"}),
    Beat(_t(6, "15:10"), "wm_chen", "behaviour", {"event": "group_joined", "group": "vip_group"}),
    Beat(_t(6, "11:00"), "wm_wang", "message", {"text": "1"}),
    Beat(_t(6, "15:20"), "wm_chen", "message", {"text": "直播几点开始？"}),
    Beat(_t(8, "20:00"), "wm_lin", "message", {"text": "视黄醇晚霜敏感肌能用吗？多少钱"}),
    Beat(_t(10, "21:00"), "wm_lin", "order", {"event": "paid", "order_id": "XH20261203001", "amount": 329}),
    Beat(_t(12, "18:00"), "wm_lin", "message", {"text": "我的快递到哪了"}),
    Beat(_t(14, "10:00"), "wm_lin", "message", {"text": "拆封了还能退货吗？"}),
    Beat(_t(12, "09:00"), "wm_lin", "order", {"event": "shipped", "order_id": "XH20261203001"}),
    Beat(_t(13, "14:00"), "wm_lin", "order", {"event": "delivered", "order_id": "XH20261203001"}),
]


def run_demo(home: Path, *, days: int = 30, console: Console | None = None, shop_days: int = 14,
             shop_customers: int = 300) -> dict[str, Any]:
    """Play the script over ``days`` simulated days on a fresh embedded setup; print and return a summary. Then
    ``shop_days`` days of a shop with ``shop_customers`` new customers (api/report/demo_data.py) and the daily
    review report of the last of them, written under ``home/reports``."""
    console = console or Console()
    if home.exists():
        shutil.rmtree(home)
    settings = Settings(home=home)
    clock = SimClock(START)
    runtime = Runtime.build(settings, clock=clock)
    deps = runtime.deps
    runtime.load_demo_shop()
    _shop_records(runtime)
    for index, beat in enumerate(sorted(SCRIPT, key=lambda b: b.offset)):
        submit(deps, key=f"demo-{index}", customer_id=beat.customer, kind=beat.kind, payload=beat.payload,
               at=START + beat.offset)
    runtime.run_until(START + timedelta(days=days))
    assert isinstance(deps.channel, SandboxChannel)
    summary = _report(runtime, deps.channel, console)
    if shop_days > 0:
        summary["report"] = _shop_and_report(runtime, settings, home, console, shop_days, shop_customers)
    return summary


def _shop_and_report(runtime: Runtime, settings: Settings, home: Path, console: Console, days: int,
                     customers: int) -> Path:
    """A busier shop for the daily review report: ``days`` days, ``customers`` new customers, then the report."""
    from api.report import daily
    from api.report.demo_data import play

    deps = runtime.deps
    start = deps.shop.at(deps.shop.local_date(deps.clock.now()) + timedelta(days=1), time(0))
    console.rule(f"[bold]店铺 {days} 天运营[/]：{customers} 位新客户、问答、下单、投诉、社群打卡（最后一天打卡下滑，第 7 天改版 SOP）")
    played = play(runtime, days=days, customers=customers, start=start, dip_day=days)  # the report's day dips
    console.print(f"{played.customers} 位客户，{played.messages} 条消息，{played.orders} 笔订单，"
                  f"{played.checkins} 次打卡，{played.tasks_completed} 个员工任务完成（用时 {played.wall_seconds:.1f} 秒）")
    day = deps.shop.local_date(played.end - timedelta(seconds=1))
    ctx = daily.context(settings, deps.engine, deps.library, embedder=runtime.conversation.embedder
                        if runtime.conversation is not None else None)
    report = daily.generate(ctx, day, played.end)
    path = daily.write(report, "html", home / "reports" / f"{day.isoformat()}.html")
    daily.write(report, "md", path.with_suffix(".md"))
    console.rule(f"[bold]每日复盘报告 {day.isoformat()}[/]")
    console.print(report.narrative.text, highlight=False)
    console.print(f"报告：{path}（Markdown：{path.with_suffix('.md')}）", highlight=False)
    return path


def _shop_records(runtime: Runtime) -> None:
    """Xiao Lin's order and parcel in the shop tables, so her order and logistics questions have answers."""
    local = runtime.deps.shop.local
    with runtime.deps.engine.begin() as conn:
        upsert(conn, ShopOrder.__table__, [{
            "order_no": "XH20261203001", "customer_id": "wm_lin", "status": "shipped", "amount": 329,
            "items": [{"sku": "SKU-CR02", "name": "视黄醇抗皱紧致晚霜 50g", "qty": 1, "price": 329}],
            "address": "上海市徐汇区漕溪北路 88 号 小林", "created_at": START + _t(10, "21:00")}])
        upsert(conn, Shipment.__table__, [{
            "tracking_no": "SF1203001", "order_no": "XH20261203001", "carrier": "顺丰速运", "status": "in_transit",
            "eta": f"{local(START + _t(13, '12:00')):%Y-%m-%d}",
            "events": [{"at": f"{local(START + _t(12, '09:00')):%Y-%m-%d %H:%M}", "location": "杭州",
                        "text": "快件已由【杭州仓】揽收"},
                       {"at": f"{local(START + _t(12, '16:40')):%Y-%m-%d %H:%M}", "location": "上海",
                        "text": "快件已到达【上海浦东分拨中心】"}]}])


def _report(runtime: Runtime, channel: SandboxChannel, console: Console) -> dict[str, Any]:
    deps = runtime.deps
    shop = deps.shop
    records = channel.records()
    with deps.engine.connect() as conn:
        customers = {r["id"]: dict(r) for r in conn.execute(select(Customer.__table__)).mappings()}
        tags: dict[str, list[str]] = {}
        for cid, tag in conn.execute(select(CustomerTag.__table__.c.customer_id, CustomerTag.__table__.c.tag)):
            tags.setdefault(cid, []).append(tag)
        timeline = [dict(r) for r in conn.execute(select(TimelineEntry.__table__).order_by(
            TimelineEntry.__table__.c.at, TimelineEntry.__table__.c.id)).mappings()]
        tasks = Counter(conn.execute(select(EmployeeTask.__table__.c.customer_id)).scalars())
        coupons = Counter(conn.execute(select(CouponLedger.__table__.c.customer_id)).scalars())
        outbox = conn.execute(select(Outbox.__table__.c.customer_id, Outbox.__table__.c.status,
                                     Outbox.__table__.c.defer_count)).all()
        runs = conn.execute(select(SopRun.__table__.c.customer_id, SopRun.__table__.c.sop_id,
                                   SopRun.__table__.c.status)).all()
    mode_names = {"kf": "客服消息", "welcome": "欢迎语", "member_task": "员工任务", "group_task": "群发任务",
                  "moment_task": "朋友圈任务", "task": "人工任务", "api": "标签同步"}
    summary: dict[str, Any] = {}
    for cid, (name, story) in PEOPLE.items():
        console.rule(f"[bold]{name}[/]（{cid}）— {story}")
        events: list[tuple[datetime, str]] = []
        for rec in records:
            if rec["customer_id"] != cid or rec["action"] == "tag":
                continue
            text = rec["payload"].get("text") or rec["payload"].get("title") or ""
            label = {"task": "任务"}.get(rec["action"], "发送")
            events.append((as_utc(datetime.fromisoformat(rec["at"])),
                           f"[green]{label}[/] [{mode_names.get(rec['mode'], rec['mode'])}] {rec['action']}: {text}"))
        for entry in timeline:
            if entry["customer_id"] == cid:
                color = {"deferred": "yellow", "cancelled": "red", "stage": "magenta", "tag": "cyan",
                         "inbound": "blue"}.get(entry["kind"], "white")
                events.append((as_utc(entry["at"]), f"[{color}]{entry['summary']}[/]"))
        for at, line in sorted(events, key=lambda e: e[0]):
            console.print(f"  {shop.local(at):%m-%d %a %H:%M}  {line}", highlight=False, soft_wrap=True)
        statuses = Counter(s for c, s, _ in outbox if c == cid)
        summary[cid] = {
            "name": name, "stage": customers.get(cid, {}).get("stage", "-"), "tags": sorted(tags.get(cid, [])),
            "sent": sum(1 for r in records if r["customer_id"] == cid and r["action"] != "tag"),
            "deferrals": sum(d for c, _, d in outbox if c == cid), "cancelled": statuses.get("cancelled", 0),
            "tasks": tasks.get(cid, 0), "coupons": coupons.get(cid, 0),
            "runs": sorted(f"{sop}:{status}" for c, sop, status in runs if c == cid),
            "duplicates": sum(1 for r in records if r["customer_id"] == cid and r["attempts"] > 1),
        }
    table = Table(title="30 天汇总 / summary")
    for column in ("客户", "阶段", "标签", "已发送", "推迟", "取消", "员工任务", "券", "SOP 运行"):
        table.add_column(column)
    for row in summary.values():
        table.add_row(row["name"], row["stage"], "、".join(row["tags"]), str(row["sent"]), str(row["deferrals"]),
                      str(row["cancelled"]), str(row["tasks"]), str(row["coupons"]), "\n".join(row["runs"]))
    console.print(table)
    broadcast = [r for r in records if r["customer_id"] == "__broadcast__"]
    console.print(f"群发与朋友圈任务（所有客户共享）：{len(broadcast)} 条；"
                  f"重复投递：{sum(1 for r in records if r['attempts'] > 1)} 条")
    return summary
