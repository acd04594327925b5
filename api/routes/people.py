"""People: log in with a password, see who you are, and (admins) manage operator accounts and their roles."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from api import audit, people
from api.deps import AdminDep, PrincipalDep, ServiceDep, bearer
from api.people import AccountError, Role
from api.rate_limit import RateLimiter

router = APIRouter(prefix="/api", tags=["people"])
LOGINS_PER_MINUTE = 10  # per client address and name: guessing a password is slowed to a crawl


def login_limiter() -> RateLimiter:
    return RateLimiter(LOGINS_PER_MINUTE, timedelta(minutes=1))
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"


class LoginIn(BaseModel):
    username: str = Field(pattern=USERNAME)
    password: str = Field(min_length=1, max_length=256)


class LoginOut(BaseModel):
    token: str
    username: str
    role: Role
    expires_at: datetime


class MeOut(BaseModel):
    username: str
    role: Role


class AccountIn(BaseModel):
    username: str = Field(pattern=USERNAME)
    password: str = Field(min_length=8, max_length=256)
    role: Role
    display_name: str = Field(default="", max_length=64)
    wecom_userid: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.@-]*$")


class AccountPatch(BaseModel):
    role: Role | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)
    active: bool | None = None
    wecom_userid: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.@-]*$")


class AccountOut(BaseModel):
    username: str
    display_name: str
    role: Role
    wecom_userid: str | None
    active: bool
    created_at: datetime


def _audit(service: Any, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    with service.runtime.deps.engine.begin() as conn:
        audit.record(conn, at=service.clock.now(), actor=actor, action=action, target=target, detail=detail)


@router.post("/auth/login", response_model=LoginOut, responses={401: {"description": "wrong name or password"},
                                                                 429: {"description": "too many attempts"}})
async def log_in(request: Request, body: LoginIn, service: ServiceDep) -> Any:
    """A session token for the console (send it as ``Authorization: Bearer …``); valid for 7 days."""
    now = service.clock.now()
    limiter: RateLimiter = request.app.state.login_limits
    key = f"{request.client.host if request.client else '-'}:{body.username}"
    if not limiter.hit(key, now):
        raise HTTPException(429, "too many login attempts; wait a minute",
                            headers={"Retry-After": str(limiter.retry_after(key, now))})
    made = await run_in_threadpool(people.login, service.runtime.deps.engine, body.username, body.password, at=now)
    if made is None:
        raise HTTPException(401, "wrong username or password")
    token, who, expires = made
    await run_in_threadpool(_audit, service, who.username, "auth.login", who.username, {})
    return LoginOut(token=token, username=who.username, role=who.role, expires_at=expires)


@router.post("/auth/logout", status_code=204, responses={401: {"description": "not logged in"}})
async def log_out(request: Request, who: PrincipalDep, service: ServiceDep) -> None:
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    if credentials is not None:
        await run_in_threadpool(people.logout, service.runtime.deps.engine, credentials.credentials)


@router.get("/auth/me", response_model=MeOut, responses={401: {"description": "not logged in"}})
def me(who: PrincipalDep) -> Any:
    return MeOut(username=who.username, role=who.role)


@router.get("/operators", response_model=list[AccountOut], responses={401: {}, 403: {"description": "admins only"}})
def list_operators(service: ServiceDep, _: AdminDep) -> Any:
    return people.listing(service.runtime.deps.engine)


@router.post("/operators", response_model=list[AccountOut], status_code=201,
             responses={401: {}, 403: {"description": "admins only"}, 409: {"description": "name taken"}})
def add_operator(body: AccountIn, service: ServiceDep, actor: AdminDep) -> Any:
    try:
        people.create(service.runtime.deps.engine, body.username, body.password, body.role, at=service.clock.now(),
                      display_name=body.display_name, wecom_userid=body.wecom_userid)
    except AccountError as exc:
        raise HTTPException(409, str(exc)) from exc
    _audit(service, actor, "operator.add", body.username, {"role": body.role})
    return people.listing(service.runtime.deps.engine)


@router.patch("/operators/{username}", response_model=list[AccountOut],
              responses={401: {}, 403: {"description": "admins only"}, 404: {"description": "unknown operator"}})
def change_operator(username: str, body: AccountPatch, service: ServiceDep, actor: AdminDep) -> Any:
    if not people.change(service.runtime.deps.engine, username, role=body.role, password=body.password,
                         active=body.active, wecom_userid=body.wecom_userid):
        raise HTTPException(404, f"unknown operator {username!r}")
    _audit(service, actor, "operator.change", username,
           {k: v for k, v in body.model_dump(exclude_none=True).items() if k != "password"}
           | ({"password": "reset"} if body.password else {}))
    return people.listing(service.runtime.deps.engine)
