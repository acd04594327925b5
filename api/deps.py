"""FastAPI dependencies: the service and operator authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.service import Service

_bearer = HTTPBearer(auto_error=False, description="SOPAGENT_OPERATOR_TOKEN")


def get_service(request: Request) -> Service:
    return request.app.state.service


def operator(request: Request,
             credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The operator API needs the bearer token; a customer channel never carries it."""
    expected: str = request.app.state.operator_token
    given = credentials.credentials if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "operator bearer token required", headers={"WWW-Authenticate": "Bearer"})
    return "operator"


ServiceDep = Annotated[Service, Depends(get_service)]
OperatorDep = Annotated[str, Depends(operator)]
