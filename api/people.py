"""Operator accounts: roles, passwords (argon2, via argon2-cffi), login sessions, and who a role's tasks reach.

The static ``SOPAGENT_OPERATOR_TOKEN`` stays valid (automation and the first admin's bootstrap); it acts as the
admin "operator". A person logs in with a password and gets a session token; everything they change is audited
under their username.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine

from api.tables import OperatorAccount, OperatorSession
from knowledge.clock import as_utc
from knowledge.db import upsert

Role = Literal["admin", "operator", "advisor"]
ROLES: tuple[Role, ...] = ("admin", "operator", "advisor")
SESSION_DAYS = 7
_HASHER = PasswordHasher()
_A, _S = OperatorAccount.__table__.c, OperatorSession.__table__.c
# verifying against this when the user does not exist keeps a wrong name as slow as a wrong password
_DUMMY = _HASHER.hash("not-a-password")


@dataclass(frozen=True)
class Principal:
    """Who is calling the operator API."""

    username: str
    role: Role


class AccountError(ValueError):
    """A bad account change (unknown role, short password, duplicate name): the message says which."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    if len(password) < 8 or len(password) > 256:
        raise AccountError("password must be 8–256 characters")


def create(engine: Engine, username: str, password: str, role: str, *, at: datetime, display_name: str = "",
           wecom_userid: str | None = None) -> None:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    check_password(password)
    with engine.begin() as conn:
        if conn.execute(select(_A.username).where(_A.username == username)).first() is not None:
            raise AccountError(f"operator {username!r} exists")
        conn.execute(OperatorAccount.__table__.insert().values(
            username=username, display_name=display_name or username, role=role, password_hash=_HASHER.hash(password),
            wecom_userid=wecom_userid, active=True, created_at=as_utc(at)))


def change(engine: Engine, username: str, *, role: str | None = None, password: str | None = None,
           active: bool | None = None, wecom_userid: str | None = None) -> bool:
    """Update an account; a new password or deactivation ends its sessions. False for an unknown name."""
    values: dict[str, object] = {}
    if role is not None:
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        values["role"] = role
    if password is not None:
        check_password(password)
        values["password_hash"] = _HASHER.hash(password)
    if active is not None:
        values["active"] = active
    if wecom_userid is not None:
        values["wecom_userid"] = wecom_userid or None
    with engine.begin() as conn:
        found = conn.execute(update(OperatorAccount.__table__).where(_A.username == username).values(**values)
                             ).rowcount if values else int(conn.execute(
                                 select(_A.username).where(_A.username == username)).first() is not None)
        if found and (password is not None or active is False):
            conn.execute(delete(OperatorSession.__table__).where(_S.username == username))
    return bool(found)


def login(engine: Engine, username: str, password: str, *, at: datetime) -> tuple[str, Principal, datetime] | None:
    """A new session token for the right password of an active account; None otherwise."""
    with engine.connect() as conn:
        row = conn.execute(select(_A.password_hash, _A.role, _A.active).where(_A.username == username)).first()
    try:
        ok = _HASHER.verify(row.password_hash if row else _DUMMY, password) and row is not None and row.active
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None:
        return None
    token = secrets.token_urlsafe(32)
    expires = as_utc(at) + timedelta(days=SESSION_DAYS)
    with engine.begin() as conn:
        conn.execute(delete(OperatorSession.__table__).where(_S.expires_at < as_utc(at)))
        upsert(conn, OperatorSession.__table__, [{"token_hash": _token_hash(token), "username": username,
                                                  "created_at": as_utc(at), "expires_at": expires}])
        if _HASHER.check_needs_rehash(row.password_hash):
            conn.execute(update(OperatorAccount.__table__).where(_A.username == username)
                         .values(password_hash=_HASHER.hash(password)))
    return token, Principal(username, row.role), expires


def session(engine: Engine, token: str, *, at: datetime) -> Principal | None:
    """The person a session token belongs to, while it is valid and their account active."""
    with engine.connect() as conn:
        row = conn.execute(select(_A.username, _A.role).select_from(
            OperatorSession.__table__.join(OperatorAccount.__table__, _A.username == _S.username)).where(
            _S.token_hash == _token_hash(token), _S.expires_at > as_utc(at), _A.active.is_(True))).first()
    return Principal(row.username, row.role) if row else None


def logout(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(OperatorSession.__table__).where(_S.token_hash == _token_hash(token)))


def listing(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(_A.username, _A.display_name, _A.role, _A.wecom_userid, _A.active, _A.created_at)
                            .order_by(_A.username)).mappings().all()
    return [dict(r) for r in rows]


def names_of(engine: Engine, username: str) -> set[str]:
    """The names tasks and customers may give a person: username, display name and WeCom userid."""
    with engine.connect() as conn:
        row = conn.execute(select(_A.display_name, _A.wecom_userid).where(_A.username == username)).first()
    return {username} | ({n for n in row if n} if row is not None else set())


def userid_of(engine: Engine, username: str) -> str | None:
    """The person's WeCom userid, if they have one."""
    with engine.connect() as conn:
        return conn.execute(select(_A.wecom_userid).where(_A.username == username)).scalar()


def userids_of(engine: Engine, assignee: str) -> list[str]:
    """The WeCom userids a task for ``assignee`` reaches: the active people of that role, or that person."""
    with engine.connect() as conn:
        rows = conn.execute(select(_A.wecom_userid).where(
            _A.active.is_(True), _A.wecom_userid.is_not(None),
            (_A.role == assignee) | (_A.username == assignee))).scalars().all()
    return sorted({r for r in rows if r})
