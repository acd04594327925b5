"""Events the shop pushes: ``POST /api/events/orders`` (signed with ``SOPAGENT_ORDER_WEBHOOK_SECRET``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from api.bounds import body_invalid
from api.deps import ServiceDep
from api.openapi import inlined_schema
from api.order_events import SIGNATURE, TIMESTAMP, OrderEventIn, SignatureError, apply_event, verify

router = APIRouter(prefix="/api/events", tags=["events"])


class EventOut(BaseModel):
    event_id: str
    duplicate: bool
    customer_known: bool
    order_status: str
    emitted: list[str]


@router.post("/orders", response_model=EventOut, openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": inlined_schema(OrderEventIn)}}}}, responses={
    401: {"description": "bad or missing signature, or a timestamp out of tolerance"},
    404: {"description": "the webhook is not configured (SOPAGENT_ORDER_WEBHOOK_SECRET)"}})
async def order_event(request: Request, service: ServiceDep) -> Any:
    """An order event from the shop, signed: ``X-Sopagent-Timestamp`` (Unix seconds) and ``X-Sopagent-Signature:
    sha256=<hex HMAC-SHA256 of '<timestamp>.<raw body>'>``. Idempotent by ``event_id``; the order (and parcel)
    tables are updated and the events the new status implies reach the customer's SOPs once."""
    secret = service.settings.order_webhook_secret
    if secret is None:
        raise HTTPException(404, "order webhook not configured: set SOPAGENT_ORDER_WEBHOOK_SECRET")
    body = await request.body()
    try:
        verify(secret.get_secret_value(), request.headers.get(TIMESTAMP), request.headers.get(SIGNATURE), body,
               now=service.clock.now(), tolerance=timedelta(seconds=service.settings.order_webhook_tolerance_seconds))
    except SignatureError as exc:
        raise HTTPException(401, str(exc)) from exc
    try:
        event = OrderEventIn.model_validate_json(body)
    except ValidationError as exc:
        raise body_invalid(exc) from exc
    applied = await run_in_threadpool(apply_event, service.runtime.deps.engine, event, now=service.clock.now())
    if applied.emitted:
        service.wake()
    return EventOut(event_id=event.event_id, duplicate=applied.duplicate, customer_known=applied.customer_known,
                    order_status=applied.status, emitted=applied.emitted)
