"""``GET/POST /wecom/callback``: URL verification and encrypted callbacks (wecom.md §1).

Every refusal is a specific 4xx with a JSON reason and one log line: 400 missing parameters,
malformed XML or undecryptable payload; 401 bad signature; 403 stale timestamp or foreign receiveid;
413 oversized body; 404 when WeCom is not configured. A verified callback is stored durably, then
acknowledged with an empty 200; retries of the same callback are stored once.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import ServiceDep
from api.service import Service
from api.wecom.crypto import RECEIVEID_INVALID, SIGNATURE_INVALID, CryptoError
from api.wecom.messages import dedupe_key, envelope_encrypt, parse_message
from knowledge.clock import as_utc

router = APIRouter(tags=["wecom"])
MAX_TIMESTAMP_DIGITS = 12  # Unix seconds have 10 digits until the year 2286
log = logging.getLogger("sopagent.callback")
ERRORS = {
    400: {"description": "missing parameters, malformed XML or undecryptable payload"},
    401: {"description": "signature mismatch"},
    403: {"description": "stale timestamp or receiveid of another corp"},
    404: {"description": "WeCom callback not configured"},
    413: {"description": "body too large"},
}


def _refuse(status: int, reason: str, code: int | None = None) -> JSONResponse:
    log.warning("callback refused: %d %s%s", status, reason, f" ({code})" if code else "")
    return JSONResponse({"error": reason, "code": code}, status_code=status)


def _crypto_status(exc: CryptoError) -> int:
    if exc.code == SIGNATURE_INVALID:
        return 401
    if exc.code == RECEIVEID_INVALID:
        return 403
    return 400


def _check_query(service: Service, request: Request) -> JSONResponse | tuple[str, str, str]:
    """The signature parameters every callback carries, or the refusal (not configured, missing, stale)."""
    if service.crypto is None:
        return _refuse(404, "WeCom callback is not configured (SOPAGENT_WECOM_TOKEN / _AES_KEY / _CORP_ID)")
    q = request.query_params
    sig, ts, nonce = q.get("msg_signature"), q.get("timestamp"), q.get("nonce")
    if not sig or not ts or not nonce:
        return _refuse(400, "msg_signature, timestamp and nonce are required")
    if not ts.isdecimal():  # isdigit() also admits superscripts such as '¹', which int() refuses
        return _refuse(400, "timestamp is not an integer")
    if len(ts) > MAX_TIMESTAMP_DIGITS:  # a 310-digit timestamp would overflow the float comparison below
        return _refuse(400, f"timestamp has more than {MAX_TIMESTAMP_DIGITS} digits")
    skew = abs(as_utc(service.clock.now()).timestamp() - int(ts))
    if skew > service.settings.callback_max_skew_seconds:
        return _refuse(403, f"stale timestamp ({int(skew)} s from now)")
    return sig, ts, nonce


@router.get("/wecom/callback", response_class=PlainTextResponse, responses=ERRORS)
async def verify_url(request: Request, service: ServiceDep) -> Response:
    """URL verification: return the decrypted echostr as plain text (no quotes, BOM or newline)."""
    checked = _check_query(service, request)
    if isinstance(checked, JSONResponse):
        return checked
    sig, ts, nonce = checked
    echostr = request.query_params.get("echostr", "").replace(" ", "+")  # a raw '+' arrives as a space
    if not echostr:
        return _refuse(400, "echostr is required")
    assert service.crypto is not None
    try:
        plain = service.crypto.verify_and_decrypt(sig, ts, nonce, echostr)
    except CryptoError as exc:
        return _refuse(_crypto_status(exc), str(exc), exc.code)
    return PlainTextResponse(plain)


@router.post("/wecom/callback", response_class=Response, responses={200: {"description": "stored; empty body"},
                                                                     503: {"description": "could not store; retry"},
                                                                     **ERRORS})
async def receive(request: Request, service: ServiceDep) -> Response:
    """Verify, decrypt, store durably, acknowledge with an empty 200; processing happens in the pump."""
    limit = service.settings.callback_max_bytes
    length = request.headers.get("content-length", "")
    if length.isdecimal() and int(length) > limit:
        service.metrics.callbacks.labels(result="refused").inc()
        return _refuse(413, f"body larger than {limit} bytes")
    checked = _check_query(service, request)
    if isinstance(checked, JSONResponse):
        service.metrics.callbacks.labels(result="refused").inc()
        return checked
    sig, ts, nonce = checked
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            service.metrics.callbacks.labels(result="refused").inc()
            return _refuse(413, f"body larger than {limit} bytes")
    assert service.crypto is not None
    try:
        encrypted = envelope_encrypt(body)
        plain = service.crypto.verify_and_decrypt(sig, ts, nonce, encrypted)
        message = parse_message(plain)
    except CryptoError as exc:
        service.metrics.callbacks.labels(result="refused").inc()
        return _refuse(_crypto_status(exc), str(exc), exc.code)
    row = {"key": dedupe_key(message, plain), "kind": str(message.get("Event") or message.get("MsgType") or ""),
           "body": plain, "received_at": as_utc(service.clock.now()), "status": "pending", "attempts": 0}
    try:
        await service.store.store(row)
    except Exception:
        service.metrics.callbacks.labels(result="error").inc()
        return JSONResponse({"error": "could not store the callback; WeCom will retry"}, status_code=503)
    service.metrics.callbacks.labels(result="stored").inc()
    return Response(status_code=200)

