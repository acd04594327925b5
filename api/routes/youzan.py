"""有赞 push messages: ``POST /api/events/youzan`` (on when SOPAGENT_YOUZAN_CLIENT_ID and _SECRET are set).

Thin: the body arrives bounded (the BoundedBody middleware refuses one over ``max_body_bytes`` with 413 and invalid
JSON with 422); :mod:`api.platforms.youzan` verifies, parses and applies it through the generic order-event path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from api.bounds import body_invalid
from api.deps import ServiceDep
from api.openapi import inlined_schema
from api.order_events import SignatureError
from api.platforms.youzan import (
    CLIENT_HEADER,
    SIGN_HEADER,
    MalformedPush,
    OrderNotYetKnown,
    YouzanPush,
    apply_push,
    parse_push,
    verify,
)

router = APIRouter(prefix="/api/events", tags=["events"])


class YouzanAck(BaseModel):
    """有赞 counts ``{"code": 0, "msg": "success"}`` as received; anything else is redelivered. The other fields
    say what the push did."""

    code: int = 0
    msg: str = "success"
    event_id: str | None = None
    ignored: str | None = Field(default=None, description="why nothing was done (a test message, an unmapped type)")
    duplicate: bool = False
    customer_known: bool | None = None
    order_status: str | None = None
    emitted: list[str] = Field(default_factory=list)


@router.post("/youzan", response_model=YouzanAck, openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": inlined_schema(YouzanPush)}}}}, responses={
    401: {"description": "not signed with this app's client_secret (Event-Sign header or sign field), or for "
                         "another client_id"},
    404: {"description": "not configured (SOPAGENT_YOUZAN_CLIENT_ID and SOPAGENT_YOUZAN_CLIENT_SECRET)"},
    409: {"description": "a status push for an order whose paid push has not arrived yet: 有赞 redelivers it"},
    413: {"description": "body larger than max_body_bytes"}})
async def youzan_push(request: Request, service: ServiceDep) -> Any:
    """A 有赞云 push message. Signed with ``Event-Sign: md5(client_id + raw body + client_secret)`` or, in the body,
    ``sign = md5(client_id + msg + client_secret)``; ``msg`` is the URL-encoded JSON message. Trade and refund
    messages become order events (paid, shipped, delivered, refunded, cancelled), idempotent by type, id and version;
    test messages and types we do not use are acknowledged and ignored."""
    settings = service.settings
    if settings.youzan_client_id is None or settings.youzan_client_secret is None:
        raise HTTPException(404, "有赞 push not configured: set SOPAGENT_YOUZAN_CLIENT_ID and "
                                 "SOPAGENT_YOUZAN_CLIENT_SECRET")
    body = await request.body()
    try:
        push = parse_push(body)
    except ValidationError as exc:
        raise body_invalid(exc) from exc
    if push.test:  # 有赞's test messages are answered before any check: they change nothing
        return YouzanAck(ignored="test message")
    try:
        verify(push, body, client_id=settings.youzan_client_id,
               client_secret=settings.youzan_client_secret.get_secret_value(),
               event_sign=request.headers.get(SIGN_HEADER), header_client_id=request.headers.get(CLIENT_HEADER))
    except SignatureError as exc:
        raise HTTPException(401, str(exc)) from exc
    try:
        outcome = await run_in_threadpool(apply_push, service.runtime.deps.engine, push, now=service.clock.now())
    except MalformedPush as exc:
        raise HTTPException(422, str(exc)) from exc
    except OrderNotYetKnown as exc:
        raise HTTPException(409, str(exc)) from exc
    applied = outcome.applied
    if applied is None:
        return YouzanAck(event_id=outcome.event_id, ignored=outcome.ignored)
    if applied.emitted:
        service.wake()
    return YouzanAck(event_id=outcome.event_id, duplicate=applied.duplicate,
                     customer_known=None if applied.duplicate else applied.customer_known,
                     order_status=applied.status or None, emitted=applied.emitted)
