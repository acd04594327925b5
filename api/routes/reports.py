"""The daily review reports: list them, read one as JSON, HTML or Markdown (operator token)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel

from api.deps import OperatorDep, ServiceDep
from api.report import build
from api.report.daily import render
from api.report.schema import Report

router = APIRouter(prefix="/api/reports", tags=["reports"], responses={401: {"description": "operator token required"}})


class ReportListed(BaseModel):
    day: date
    generated_at: datetime
    narrative_source: str
    goals_missed: int
    anomalies: int


@router.get("", response_model=list[ReportListed])
async def list_reports(service: ServiceDep, _: OperatorDep, limit: int = Query(default=60, ge=1, le=366)) -> Any:
    """Stored daily reports, newest first."""
    return await run_in_threadpool(build.listing, service.runtime.deps.engine, limit)


@router.get("/{day}", response_model=Report, responses={
    404: {"description": "no report for that day"},
    200: {"content": {"text/html": {}, "text/markdown": {}}, "description": "the report (JSON by default)"}})
async def get_report(day: date, service: ServiceDep, _: OperatorDep,
                     format: Literal["json", "html", "md"] = "json") -> Any:  # noqa: A002 - the query's name
    """One day's report: JSON (the data), or ``?format=html`` (the self-contained page), ``?format=md``."""
    report = await run_in_threadpool(build.load, service.runtime.deps.engine, day)
    if report is None:
        raise HTTPException(404, f"no report for {day.isoformat()}; it is made each morning, or by `sopagent report`")
    if format == "json":
        return report
    text = await run_in_threadpool(render, report, format)
    if format == "html":
        return HTMLResponse(text)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


