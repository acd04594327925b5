"""Tables of the API and WeCom channel: stored callbacks, WeCom deliveries, mass-send tasks, kf sessions,
contacts' welcome codes, SOP versions, the operator audit log and the daily reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class WecomCallback(SQLModel, table=True):
    """A verified, decrypted callback, stored before the HTTP 200; ``key`` dedupes WeCom's retries."""

    __table_args__ = (Index("ix_callback_status", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    kind: str = Field(description="MsgType or Event")
    body: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime
    status: str = "pending"
    attempts: int = 0
    error: str | None = None


class WecomDelivery(SQLModel, table=True):
    """What the WeCom channel did with an outbox key: the local guard that makes every API idempotent."""

    key: str = Field(primary_key=True)
    customer_id: str | None = None
    mode: str
    result: str = Field(description="sent, task, failed")
    wecom_id: str | None = Field(default=None, index=True, description="kf msgid or mass-send msgid")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime


class MassTask(SQLModel, table=True):
    """An add_msg_template (or moment) task an employee must confirm: polled, reminded, cancelled at expiry."""

    id: int | None = Field(default=None, primary_key=True)
    wecom_msgid: str = Field(unique=True)
    kind: str = Field(description="single, group or moment")
    sender: str
    content: str = Field(sa_column=Column(Text, nullable=False))
    keys: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    customer_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    expires_at: datetime
    reminders: int = 0
    last_remind_at: datetime | None = None
    status: str = Field(default="open", index=True, description="open, done, cancelled")
    sent_count: int = 0


class KfSession(SQLModel, table=True):
    """The 微信客服 account a customer talks to, and the session state WeCom reported."""

    customer_id: str = Field(primary_key=True)
    open_kfid: str
    last_msg_at: datetime | None = None
    service_state: int = 1


class WecomContact(SQLModel, table=True):
    """The employee relationship of an external contact, and the add event's one-shot welcome code."""

    customer_id: str = Field(primary_key=True)
    userid: str = ""
    welcome_code: str | None = None
    welcome_code_at: datetime | None = None
    welcome_used: bool = False


class SopVersion(SQLModel, table=True):
    """Operator-authored SOP YAML, one row per saved version; the published one is what runs."""

    __table_args__ = (UniqueConstraint("sop_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    sop_id: str = Field(index=True)
    version: int
    source: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="draft", description="draft, published, retired")
    created_at: datetime
    created_by: str = "operator"


class AuditLog(SQLModel, table=True):
    """Every change an operator makes through the API."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class DailyMetrics(SQLModel, table=True):
    """A shop day's computed metrics, kept once the day is final (its 24 h reply window has closed)."""

    day: str = Field(primary_key=True, description="shop-local date, ISO")
    body: str = Field(sa_column=Column(Text, nullable=False))
    computed_at: datetime


class DailyReport(SQLModel, table=True):
    """The daily review report of a shop day (api/report), as JSON; HTML and Markdown are rendered from it."""

    day: str = Field(primary_key=True, description="shop-local date, ISO")
    body: str = Field(sa_column=Column(Text, nullable=False))
    generated_at: datetime
    narrative_source: str = "offline"
    goals_missed: int = 0
    anomalies: int = 0


class OperatorAccount(SQLModel, table=True):
    """A person who works in the console: their role decides what they may change; tasks for the role reach them."""

    username: str = Field(primary_key=True, max_length=64)
    display_name: str = ""
    role: str = Field(description="admin, operator or advisor (售后)")
    password_hash: str
    wecom_userid: str | None = Field(default=None, description="their WeCom userid: tasks for their role reach them")
    active: bool = True
    created_at: datetime


class OperatorSession(SQLModel, table=True):
    """A login: only the SHA-256 of the bearer token is kept."""

    token_hash: str = Field(primary_key=True)
    username: str = Field(index=True)
    created_at: datetime
    expires_at: datetime


class LibraryFileVersion(SQLModel, table=True):
    """An operator's version of a library catalogue file (materials, campaigns, groups, tags); the published one
    is what runs."""

    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, description="materials.yaml, campaigns.yaml, groups.yaml or tags.yaml")
    version: int
    source: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="published", description="published or retired")
    created_at: datetime
    created_by: str = "operator"


class OrderEventLog(SQLModel, table=True):
    """Order events received from the shop, by the shop's event id: a redelivery is recognised and ignored."""

    event_id: str = Field(primary_key=True)
    type: str
    order_no: str = Field(index=True)
    customer_id: str
    received_at: datetime


class WeComGroupChat(SQLModel, table=True):
    """A customer group (客户群) of the corp as the last ``sopagent wecom sync`` saw it."""

    chat_id: str = Field(primary_key=True)
    name: str = ""
    owner: str = ""
    created_at: datetime | None = None
    member_count: int = 0
    external_members: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    synced_at: datetime


class PumpLease(SQLModel, table=True):
    """Who pumps this database, until when (renewed every third of its term while pumping)."""

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime
    heartbeat_at: datetime
