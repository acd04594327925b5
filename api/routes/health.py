"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.deps import ServiceDep
from api.service import Service

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class BrainHealth(BaseModel):
    """The LLM endpoint's circuit: ``closed`` (calls go out), ``open`` (the offline brain answers without
    calling), ``half_open`` (the cool-down is over: the next call is the probe)."""

    name: str
    circuit: str
    consecutive_failures: int
    opened_at: datetime | None = None
    last_error: str | None = Field(default=None, description="the kind of the last failure (its message, which may "
                                   "echo the endpoint's answer, stays in the review task and the logs)")


class Ready(BaseModel):
    status: str
    channel: str
    queues: dict[str, int]
    brain: str = Field(default="ok", description="ok, or degraded while the LLM circuit is not closed (the offline "
                       "brain answers; the service stays ready)")
    brain_health: BrainHealth | None = None


def brain_health(service: Service) -> tuple[str, BrainHealth | None]:
    conversation = service.runtime.conversation
    if conversation is None:
        return "ok", None
    status = conversation.breaker.status()
    health = BrainHealth(name=conversation.brain.name, circuit=status.state.value,
                         consecutive_failures=status.consecutive_failures, opened_at=status.opened_at,
                         last_error=status.last_error.split(":", 1)[0] if status.last_error else None)
    return ("ok" if status.healthy else "degraded"), health


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
    brain, health = brain_health(service)
    try:
        queues = await run_in_threadpool(check)
    except Exception:
        response.status_code = 503
        return Ready(status="unavailable", channel=channel, queues={}, brain=brain, brain_health=health)
    return Ready(status="ready", channel=channel, queues=queues, brain=brain, brain_health=health)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(service: ServiceDep) -> Response:
    body = await run_in_threadpool(service.metrics.render, service)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
