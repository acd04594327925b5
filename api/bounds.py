"""Bounded request bodies on every route, as one ASGI middleware.

* Size: a body over the limit is refused with 413 and a JSON reason. A ``Content-Length`` over the limit is
  refused before anything is read; a body without one (chunked) is counted while it streams in and refused
  as soon as the count passes the limit, so nothing larger than the limit is ever held in memory.
* JSON: a JSON body is parsed once up front by pydantic-core (strict UTF-8, lone surrogate escapes such as
  ``"\\ud800"`` refused) and its nesting depth checked, so the route never sees undecodable text or a
  pathologically deep document; the refusal is FastAPI's own 422 ``json_invalid`` shape.

Also the integer bound the routes use for anything that reaches a 64-bit database column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic_core
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INT64_MAX = 2**63 - 1  # SQLite and Postgres integers; Python's are unbounded and overflow the driver


def body_invalid(exc: ValidationError) -> RequestValidationError:
    """A body a route validated by hand (read raw for a signature or an upload) as FastAPI's own 422, without
    echoing the input back (it may be megabytes)."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(
        include_url=False, include_context=False, include_input=False)])


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; an HTTPException, so FastAPI's body
    reading lets it through unchanged (any other exception there becomes a vague 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def _is_json(headers: Headers) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def json_depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/objects more than ``limit`` levels deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _json_invalid(message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": message, "input": {}}]},
                        status_code=422)


class BoundedBody:
    """ASGI middleware: ``max_bytes`` per request body (``limits`` overrides it by path prefix) and JSON bodies
    valid UTF-8 JSON at most ``max_json_depth`` levels deep."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_json_depth: int,
                 limits: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth
        self.limits = tuple(limits)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "").strip()
        too_large = JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)
        if declared.isdecimal() and (len(declared) > 18 or int(declared) > limit):
            await too_large(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if _is_json(headers):
                await self._json(scope, bounded_receive, receive, tracking_send)
            else:
                await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(scope, receive, send)

    async def _json(self, scope: Scope, bounded_receive: Receive, receive: Receive, send: Send) -> None:
        """Read the whole (bounded) JSON body, check it, then hand it to the app as one message."""
        chunks: list[bytes] = []
        while True:
            message = await bounded_receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = self._json_problem(body) if body else None  # an empty body is FastAPI's "field required"
        if problem is not None:
            await _json_invalid(problem)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _json_problem(self, body: bytes) -> str | None:
        """Why ``body`` is refused as JSON, or None."""
        deep = f"JSON decode error: nested deeper than {self.max_json_depth} levels"
        try:
            value = pydantic_core.from_json(body)
        except ValueError as exc:  # pydantic-core itself stops at a recursion limit (200) while parsing
            return deep if "recursion limit" in str(exc) else f"JSON decode error: {exc}"
        return deep if json_depth_over(value, self.max_json_depth) else None

