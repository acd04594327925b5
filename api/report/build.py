"""Builds, stores and lists the daily review report of a shop day.

Metrics of past days are computed once they are final (the day ended more than 24 h ago, so its reply window has
closed) and kept in ``DailyMetrics``; a report needs 14 days of them (trends, and the 7-day baseline). Reads run
on short connections, the narrative's model call holds no transaction, and the report is stored with one upsert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from api.report import narrative, review
from api.report.goals import TREND_DAYS, Goals, anomalies, evaluate, trends
from api.report.metrics import REPLY_WINDOW, compute, day_window
from api.report.narrative import Writer
from api.report.schema import Metrics, Narrative, Report
from api.tables import DailyMetrics, DailyReport
from knowledge.clock import ShopTime, as_utc
from knowledge.db import upsert
from knowledge.embeddings import Embedder
from sop_graphs.loader import Library

_DM, _DR = DailyMetrics.__table__.c, DailyReport.__table__.c


@dataclass
class ReportContext:
    """What building a report needs besides the day."""

    engine: Engine
    library: Library
    goals: Goals
    timezone: str
    embedder: Embedder | None = None
    writer: Writer | None = None


def history(ctx: ReportContext, day: date, now: datetime, days: int = TREND_DAYS) -> dict[date, Metrics]:
    """Metrics of ``day`` and the ``days - 1`` before it: kept ones read, final ones computed and kept."""
    wanted = [day - timedelta(days=d) for d in range(days)]
    with ctx.engine.connect() as conn:
        kept = {date.fromisoformat(d): Metrics.model_validate_json(body) for d, body in conn.execute(
            select(_DM.day, _DM.body).where(_DM.day.in_([d.isoformat() for d in wanted]))).all()}
        out: dict[date, Metrics] = {}
        fresh = []
        for d in wanted:
            if d in kept:
                out[d] = kept[d]
                continue
            start, end = day_window(d, ctx.timezone)
            if start > now:
                continue
            metrics = compute(conn, ctx.library, d, ctx.timezone, sla_minutes=ctx.goals.handoff_sla_minutes, now=now)
            if metrics.customers_total == 0 and not metrics.sends.total:
                continue  # before the shop had anyone: no data, not zeros
            out[d] = metrics
            if end + REPLY_WINDOW <= now:
                fresh.append({"day": d.isoformat(), "body": metrics.model_dump_json(), "computed_at": now})
    if fresh:
        with ctx.engine.begin() as conn:
            upsert(conn, DailyMetrics.__table__, fresh)
    return out


def build(ctx: ReportContext, day: date, now: datetime) -> Report:
    """The report of the shop's local ``day`` as of ``now``."""
    now = as_utc(now)
    past = history(ctx, day, now)
    metrics = past.get(day) or compute_empty(ctx, day, now)
    goal_results = evaluate(ctx.goals, metrics, past)
    found = anomalies(metrics, past)
    with ctx.engine.connect() as conn:
        flagged = review.flagged(conn, day, ctx.timezone)
        gaps = review.gaps(conn, day, ctx.timezone, ctx.embedder)
        comparisons = review.comparisons(conn, day, ctx.timezone)
        suggestions = review.suggestions(conn, ctx.library, metrics, goal_results, found, gaps, ctx.timezone)
    report = Report(day=day, shop=ctx.library.catalog.persona.brand or "本店", generated_at=now, metrics=metrics,
                    goals=goal_results, anomalies=found, trends=trends(past, day, ctx.goals), flagged=flagged,
                    gaps=gaps, suggestions=suggestions, comparisons=comparisons,
                    narrative=Narrative(text="", source="offline", checked=True))
    report.narrative = narrative.write(report, ctx.writer)  # no transaction is open during the model call
    return report


def compute_empty(ctx: ReportContext, day: date, now: datetime) -> Metrics:
    with ctx.engine.connect() as conn:
        return compute(conn, ctx.library, day, ctx.timezone, sla_minutes=ctx.goals.handoff_sla_minutes, now=now)


def store(engine: Engine, report: Report) -> None:
    with engine.begin() as conn:
        upsert(conn, DailyReport.__table__, [{
            "day": report.day.isoformat(), "body": report.model_dump_json(), "generated_at": report.generated_at,
            "narrative_source": report.narrative.source,
            "goals_missed": sum(g.status == "missed" for g in report.goals), "anomalies": len(report.anomalies)}])


def load(engine: Engine, day: date) -> Report | None:
    with engine.connect() as conn:
        body = conn.execute(select(_DR.body).where(_DR.day == day.isoformat())).scalar()
    return Report.model_validate_json(body) if body else None


def listing(engine: Engine, limit: int = 60) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(_DR.day, _DR.generated_at, _DR.narrative_source, _DR.goals_missed, _DR.anomalies)
                            .order_by(_DR.day.desc()).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def yesterday(now: datetime, timezone: str) -> date:
    """The shop-local day before ``now``'s (the day a morning report covers)."""
    return ShopTime(timezone).local_date(now) - timedelta(days=1)
