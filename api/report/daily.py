"""The daily report as the product runs it: build and store a day's report, write it to a file, tell the operators
(a WeCom markdown app message; the sandbox records it), and the worker's "once a day at the shop's report time"."""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.engine import Engine

from api.report import build as builder
from api.report.build import ReportContext
from api.report.goals import load_goals
from api.report.metrics import day_window
from api.report.render import operator_summary, render_html, render_json, render_markdown
from api.report.schema import Report
from api.tables import DailyReport
from knowledge.clock import ShopTime
from knowledge.embeddings import Embedder
from knowledge.settings import Settings
from knowledge.tables import Customer
from sop_graphs.channel import Channel, Delivery
from sop_graphs.loader import Library

Format = Literal["html", "md", "json"]
OPERATORS = "__operators__"  # the delivery's customer id: the summary goes to employees, not to a customer
log = logging.getLogger("sopagent.report")


def context(settings: Settings, engine: Engine, library: Library, *, embedder: Embedder | None = None,
            writer: builder.Writer | None = None) -> ReportContext:
    return ReportContext(engine=engine, library=library, goals=load_goals(settings.library_path),
                         timezone=settings.shop_timezone, embedder=embedder, writer=writer)


def generate(ctx: ReportContext, day: date, now: datetime) -> Report:
    """Build the day's report and store it (a regenerated day replaces the stored one)."""
    report = builder.build(ctx, day, now)
    builder.store(ctx.engine, report)
    return report


def render(report: Report, fmt: Format) -> str:
    return {"html": render_html, "md": render_markdown, "json": render_json}[fmt](report)


def write(report: Report, fmt: Format, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report, fmt), encoding="utf-8")
    return out


def notify(channel: Channel, report: Report, *, recipients: str, link: str | None, at: datetime) -> None:
    """The operators' summary through the channel, once per day (the delivery key is the day)."""
    channel.deliver([Delivery(key=f"report/{report.day.isoformat()}", customer_id=OPERATORS, action="report_summary",
                              mode="app_markdown", touchpoint="employee", at=at,
                              payload={"touser": recipients, "text": operator_summary(report, link)})])


def due_day(settings: Settings, now: datetime) -> date | None:
    """The day whose report is due at ``now``: yesterday, once the shop's report time has passed today."""
    hours, minutes = map(int, settings.report_time.split(":"))
    local = ShopTime(settings.shop_timezone).local(now)
    return builder.yesterday(now, settings.shop_timezone) if local.time() >= time(hours, minutes) else None


def run_daily(settings: Settings, ctx: ReportContext, channel: Channel, now: datetime) -> Report | None:
    """The worker's daily job: yesterday's report, if due and not made yet; stored, written and announced."""
    day = due_day(settings, now)
    if day is None:
        return None
    with ctx.engine.connect() as conn:
        if conn.execute(select(DailyReport.__table__.c.day).where(DailyReport.__table__.c.day == day.isoformat())
                        ).first() is not None:
            return None
        if conn.execute(select(Customer.__table__.c.id).where(
                Customer.__table__.c.added_at < day_window(day, ctx.timezone)[1]).limit(1)).first() is None:
            return None  # the shop had nobody yet: nothing to review
    report = generate(ctx, day, now)
    path = write(report, "html", settings.home / "reports" / f"{day.isoformat()}.html")
    link = f"{settings.public_url.rstrip('/')}/api/reports/{day.isoformat()}?format=html" if settings.public_url \
        else str(path)
    notify(channel, report, recipients=settings.report_recipients, link=link, at=now)
    log.info("daily report for %s written to %s", day, path)
    return report
