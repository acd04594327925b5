"""FastAPI dependencies: the service and operator authentication (the static operator token, or a person's login
session with a role)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import people
from api.people import Principal
from api.service import Service

bearer = HTTPBearer(auto_error=False, description="SOPAGENT_OPERATOR_TOKEN, or the token from POST /api/auth/login")


def get_service(request: Request) -> Service:
    return request.app.state.service


async def principal(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The operator API needs a bearer token; a customer channel never carries one."""
    expected: str = request.app.state.operator_token
    given = credentials.credentials if credentials is not None else ""
    if given and hmac.compare_digest(given.encode(), expected.encode()):
        return Principal("operator", "admin")
    service: Service = request.app.state.service
    who = await run_in_threadpool(people.session, service.runtime.deps.engine, given, at=service.clock.now()) \
        if given and len(given) <= 256 else None
    if who is None:
        raise HTTPException(401, "operator bearer token required", headers={"WWW-Authenticate": "Bearer"})
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]


def operator(who: PrincipalDep) -> str:
    """The caller's name, for the audit log."""
    return who.username


def require(*roles: str) -> Callable[[Principal], str]:
    """A dependency admitting only these roles (403 otherwise); gives the caller's name."""

    def check(who: PrincipalDep) -> str:
        if who.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}; you are {who.role}")
        return who.username

    return check


ServiceDep = Annotated[Service, Depends(get_service)]
OperatorDep = Annotated[str, Depends(operator)]
EditorDep = Annotated[str, Depends(require("admin", "operator"))]  # changes SOPs, knowledge, the library
AdminDep = Annotated[str, Depends(require("admin"))]  # manages people
