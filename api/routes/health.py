"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import ServiceDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    channel: str
    queues: dict[str, int]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"description": "database unreachable"}})
async def readyz(service: ServiceDep, response: Response) -> Ready:
    def check() -> dict[str, int]:
        with service.runtime.deps.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return service.queue_depth()

    channel = "wecom" if service.client is not None else "sandbox"
    try:
        queues = await run_in_threadpool(check)
    except Exception:
        response.status_code = 503
        return Ready(status="unavailable", channel=channel, queues={})
    return Ready(status="ready", channel=channel, queues=queues)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(service: ServiceDep) -> Response:
    body = await run_in_threadpool(service.metrics.render, service)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
